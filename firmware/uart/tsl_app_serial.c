/* tsl_app_serial.c -- firmware entry point: the serial protocol loop of firmware/proto. */
int tsl_serial_main(void);

int main(void)
{
    return tsl_serial_main();
}
