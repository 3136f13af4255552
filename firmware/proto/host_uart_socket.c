/* host_uart_socket.c -- the platform layer of tsl_serial_app.c for host builds: the "UART" is a
 * TCP server on 127.0.0.1 (loopback only), reachable as pyserial's socket://127.0.0.1:PORT.
 *   usage: app [PORT [CONNECTIONS]]   PORT 0 (default): any free port; CONNECTIONS 0: unlimited
 * Prints "port N" once listening. A closed connection is like an unplugged cable: the device
 * keeps its state and the next connection carries on; after CONNECTIONS ones getc returns -1.
 * tsl_cycles() counts nanoseconds (CLOCK_MONOTONIC), modulo 2^32. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int tsl_serial_main(void);

static int lsock = -1, csock = -1;
static long conns_left;                  /* < 0: unlimited */
static uint8_t inbuf[256];
static ssize_t in_n, in_at;

int tsl_uart_getc(void)
{
    while (in_at >= in_n) {
        if (csock < 0) {
            if (conns_left == 0) return -1;
            if (conns_left > 0) conns_left--;
            csock = accept(lsock, 0, 0);
            if (csock < 0) return -1;
            const int one = 1;
            setsockopt(csock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        in_n = recv(csock, inbuf, sizeof inbuf, 0);
        in_at = 0;
        if (in_n <= 0) {
            close(csock);
            csock = -1;
            in_n = 0;
        }
    }
    return inbuf[in_at++];
}

void tsl_uart_write(const uint8_t *p, uint32_t n)
{
    while (n > 0 && csock >= 0) {        /* no one listening: the bytes are lost, as on a wire */
        const ssize_t k = send(csock, p, n, MSG_NOSIGNAL);
        if (k <= 0) return;
        p += k;
        n -= (uint32_t)k;
    }
}

uint32_t tsl_cycles(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint32_t)((uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec);
}

int main(int argc, char **argv)
{
    const int port = argc > 1 ? atoi(argv[1]) : 0;
    const long conns = argc > 2 ? atol(argv[2]) : 0;
    conns_left = conns > 0 ? conns : -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    const int one = 1;
    lsock = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lsock < 0 || bind(lsock, (struct sockaddr *)&a, sizeof a) || listen(lsock, 1) ||
        getsockname(lsock, (struct sockaddr *)&a, &len)) {
        perror("host_uart_socket");
        return 1;
    }
    printf("port %d\n", ntohs(a.sin_port));
    fflush(stdout);
    return tsl_serial_main();
}
