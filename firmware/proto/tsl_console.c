/* tsl_console.c -- the text console (tsl_console.h) on the context API of tsl_model.h; built
 * into firmware that carries a tokenizer (TSL_HAS_TOKENIZER), empty without. */
#ifdef TSL_HAS_TOKENIZER
#include <string.h>
#include "tsl_console.h"
#include "tsl_device.h"
#include "tsl_proto.h"

static void con_write(const uint8_t *p, uint32_t n) { tsl_uart_write(p, n); }
static void con_puts(const char *s) { con_write((const uint8_t *)s, (uint32_t)strlen(s)); }

/* v /= 10, -> v % 10, in 32-bit operations (some targets have no 64-bit division) */
static uint32_t con_div10(uint64_t *v)
{
    const uint32_t hi = (uint32_t)(*v >> 32), lo = (uint32_t)*v;
    uint32_t x = ((hi % 10u) << 16) | (lo >> 16);
    const uint32_t q1 = x / 10u;
    x = ((x % 10u) << 16) | (lo & 0xFFFFu);
    *v = ((uint64_t)(hi / 10u) << 32) | ((uint64_t)q1 << 16) | (x / 10u);
    return x % 10u;
}

static void con_putu(uint64_t v)
{
    char b[21];
    int i = 20;
    b[20] = 0;
    do { b[--i] = (char)('0' + con_div10(&v)); } while (v);
    con_puts(b + i);
}

static void con_putf(float f)        /* two decimals */
{
    if (f < 0) { con_puts("-"); f = -f; }
    const uint32_t c = f < 2.0e7f ? (uint32_t)(int32_t)(f * 100.0f + 0.5f) : 2000000000u;  /* int32 conversions only */
    con_putu(c / 100u);
    con_puts(c % 100u < 10u ? ".0" : ".");
    con_putu(c % 100u);
}

/* Token bytes to the terminal, '\n' as "\r\n". */
static void con_text(const uint8_t *p, int32_t n)
{
    int32_t s = 0;
    for (int32_t i = 0; i < n; i++)
        if (p[i] == '\n') {
            con_write(p + s, (uint32_t)(i - s));
            con_puts("\r\n");
            s = i + 1;
        }
    con_write(p + s, (uint32_t)(n - s));
}

static void con_banner(const tsl_console *c)
{
    const uint8_t *w = c->m->weights;
    con_puts("\r\ntinyslm " TSL_FW_VERSION " on " TSL_BOARD_NAME "\r\nmodel ");
    static const char hex[] = "0123456789abcdef";
    char h[18];
    const uint32_t v[2] = {TSL_ARCH_HASH, tsl_rd32le(w + 16)};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 8; i++) h[9 * k + i] = hex[(v[k] >> (28 - 4 * i)) & 15u];
    h[8] = '-';
    h[17] = 0;
    con_puts(h);
    con_puts(", vocab ");
    con_putu(TSL_VOCAB);
    con_puts(", context ");
    con_putu(TSL_MAX_SEQ);
    con_puts(" tokens\r\nmemory: weights ");
    con_putu(tsl_rd32le(w + 8));
    con_puts(" B, arena ");
    con_putu(TSL_ARENA_BYTES);
    con_puts(" B, KV cache ");
    con_putu(TSL_KV_BYTES);
    con_puts(" B\r\ntype text and Enter; /reset /temp T /topp P /seed S /tokens N /stats /help\r\n");
    if (*c->status != 0) {
        con_puts("model not ready: tsl_init returned ");
        con_putu((uint32_t)-*c->status);
        con_puts(" (negated)\r\n");
    }
}

static int con_same(const char *a, const char *b)     /* strcmp() == 0; some targets' libc lacks it */
{
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

static void con_stats(const tsl_console *c)
{
    if (!c->n) { con_puts("no answer yet\r\n"); return; }
    con_puts("last answer: ");
    con_putu(c->n);
    con_puts(" tokens, ");
    con_putu(c->gen / c->n);
    con_puts(" ");
    con_puts(TSL_CYCLES_UNIT);
    con_puts("/token; prompt ");
    con_putu(c->n_prefill);
    con_puts(" tokens in ");
    con_putu(c->prefill);
    con_puts(" ");
    con_puts(TSL_CYCLES_UNIT);
    const uint32_t hz = con_same(TSL_CYCLES_UNIT, "ns") ? 1000000000u : (uint32_t)TSL_CYCLES_HZ;
    if (hz && c->gen) {
        con_puts("; ");
        /* tokens/s = n * hz / gen, in float from int32 values (no 64-bit or unsigned conversions) */
        con_putf((float)(int32_t)(hz / 1000u) * 1000.0f * (float)(int32_t)c->n /
                 ((float)(int32_t)(c->gen >> 1) * 2.0f));
        con_puts(" tokens/s");
        if (!con_same(TSL_CYCLES_UNIT, "ns")) {
            con_puts(" at ");
            con_putu(hz / 1000000u);
            con_puts(" MHz");
        }
    }
    con_puts("\r\n");
#ifdef TSL_CYCLES_EMULATED
    con_puts("(an emulator: the counter runs on qemu's virtual clock, one tick per instruction with "
             "-icount, not at the chip's speed)\r\n");
#endif
}

static uint32_t con_number(const uint8_t *p, uint32_t n, uint64_t *v, float *f)
{
    uint64_t a = 0, frac = 0, scale = 1;
    uint32_t i = 0, digits = 0, dot = 0;
    while (i < n && p[i] == ' ') i++;
    for (; i < n && p[i] != ' '; i++) {
        if (p[i] == '.' && !dot) { dot = 1; continue; }
        if (p[i] < '0' || p[i] > '9' || a > 1000000000000000000ull) return 0;
        if (dot) { if (scale < 1000000u) { frac = frac * 10u + (p[i] - '0'); scale *= 10u; } }
        else a = a * 10u + (p[i] - '0');
        digits++;
    }
    if (!digits) return 0;
    *v = a;
    if (a > 1000000u && dot) return 0;
    *f = (float)(uint32_t)(a > 1000000u ? 1000000u : a) + (float)(uint32_t)frac / (float)(uint32_t)scale;
    return dot ? 2u : 1u;
}

static int con_is(const uint8_t *p, uint32_t n, const char *cmd, uint32_t *arg)
{
    const uint32_t k = (uint32_t)strlen(cmd);
    if (n < k || memcmp(p, cmd, k) != 0 || (n > k && p[k] != ' ')) return 0;
    *arg = k;
    return 1;
}

void tsl_console_reset(tsl_console *c)
{
    c->pos = 0;
    c->pending = -1;
}

void tsl_console_init(tsl_console *c, tsl_model *m, const int32_t *status, const tsl_tokenizer *tok,
                      int32_t *ids, int32_t n_ids, uint32_t *work, int32_t n_work, void *scratch)
{
    memset(c, 0, sizeof *c);
    c->m = m;
    c->status = status;
    c->tok = tok;
    c->ids = ids;
    c->n_ids = n_ids;
    c->work = work;
    c->n_work = n_work;
    c->scratch = scratch;
    c->temperature = 0.0f;
    c->top_p = 1.0f;
    c->seed = 0;
    c->max_tokens = 64;
    tsl_console_reset(c);
}

static void con_command(tsl_console *c, const uint8_t *p, uint32_t n)
{
    uint32_t k;
    uint64_t v = 0;
    float f = 0;
    con_puts("\r\n");
    if (con_is(p, n, "/reset", &k)) {
        tsl_console_reset(c);
        con_puts("context cleared\r\n");
    } else if (con_is(p, n, "/temp", &k) && con_number(p + k, n - k, &v, &f) && f <= 100.0f) {
        c->temperature = f;
        con_puts("temperature ");
        con_putf(f);
        con_puts(f == 0.0f ? " (greedy)\r\n" : "\r\n");
    } else if (con_is(p, n, "/topp", &k) && con_number(p + k, n - k, &v, &f) && f <= 1.0f) {
        c->top_p = f;
        con_puts("top-p ");
        con_putf(f);
        con_puts("\r\n");
    } else if (con_is(p, n, "/seed", &k) && con_number(p + k, n - k, &v, &f) == 1) {
        c->seed = v;
        con_puts("seed ");
        con_putu(v);
        con_puts("\r\n");
    } else if (con_is(p, n, "/tokens", &k) && con_number(p + k, n - k, &v, &f) == 1 && v >= 1 && v <= TSL_MAX_SEQ) {
        c->max_tokens = (uint32_t)v;
        con_puts("at most ");
        con_putu(v);
        con_puts(" tokens an answer\r\n");
    } else if (con_is(p, n, "/stats", &k)) {
        con_stats(c);
    } else if (con_is(p, n, "/help", &k)) {
        con_banner(c);
    } else {
        con_puts("commands: /reset, /temp T (0: greedy), /topp P (0..1), /seed S, /tokens N (1.." );
        con_putu(TSL_MAX_SEQ);
        con_puts("), /stats, /help\r\n");
    }
}

/* tsl_generate_from's callback: each token's cycles (its step and sampling), its text to the terminal. */
static int32_t con_token(void *user, int32_t tok)
{
    tsl_console *c = (tsl_console *)user;
    c->gen += TSL_NOW() - c->t;
    c->n++;
    c->pending = tok;
    const uint8_t *b;
    const int32_t k = tsl_token_decode(c->tok, tok, &b);
    if (k > 0) con_text(b, k);
    c->t = TSL_NOW();
    return 0;
}

/* The line's text continues the conversation: at position 0 after BOS, else after the last
 * sampled token; the answer streams until EOS, /tokens or the end of the context. */
static void con_generate(tsl_console *c, const uint8_t *p, uint32_t len)
{
    if (*c->status != 0) { con_puts("\r\nmodel not ready\r\n"); return; }
    int32_t *ids = c->ids;
    const int32_t first = c->pos == 0 ? (int32_t)TSL_TOK_BOS : c->pending;
    const uint32_t lead = first >= 0 ? 1u : 0u;
    const int32_t n = tsl_tokenizer_encode(c->tok, p, (int32_t)len, ids + lead, c->n_ids - 1, c->work, c->n_work);
    if (n < 0) {
        con_puts(n == TSL_TOK_ERR_ADDED_TOKEN ? "\r\n[the text holds a special token's name]\r\n"
                                              : "\r\n[the tokenizer cannot encode this text]\r\n");
        return;
    }
    ids[0] = first;
    const uint32_t total = lead + (uint32_t)n;
    if (total == 0) return;
    if (c->pos + total > TSL_MAX_SEQ) {
        con_puts("\r\n[context full: ");
        con_putu(TSL_MAX_SEQ);
        con_puts(" tokens; /reset to start again]\r\n");
        return;
    }
    c->touched = 1;                      /* from position 0 every step reads only what it wrote: no reset */
    const uint32_t t0 = TSL_NOW();
    for (uint32_t k = 0; k + 1u < total; k++) tsl_forward(c->m, ids[k], (int32_t)c->pos++, 0);
    c->prefill = TSL_NOW() - t0;
    c->n_prefill = total - 1u;
    c->n = c->gen = 0;
    const tsl_generate_cfg cfg = {(int32_t)c->max_tokens, c->temperature, c->top_p, c->seed, (int32_t)TSL_TOK_EOS};
    c->t = TSL_NOW();
    tsl_generate_from(c->m, (int32_t)c->pos, ids + total - 1u, 1, &cfg, con_token, c, 0, c->scratch, 0);
    c->pos += c->n;                      /* one step per token: the last one sampled is pending */
    con_puts("\r\n");
    if (c->pos >= TSL_MAX_SEQ) con_puts("[context full; /reset to start again]\r\n");
}

void tsl_console_key(tsl_console *c, uint8_t ch)
{
    if (!c->shown) {
        c->shown = 1;
        con_banner(c);
        if (ch == '\r' || ch == '\n') { c->last_cr = ch == '\r'; con_puts("> "); return; }
        con_puts("> ");
    }
    const uint8_t cr = ch == '\r';
    if (ch == '\n' && c->last_cr) { c->last_cr = 0; return; }
    c->last_cr = cr;
    if (ch == '\r' || ch == '\n') {
        if (c->len && c->line[0] == '/') con_command(c, c->line, c->len);
        else if (c->len) con_generate(c, c->line, c->len);
        else con_puts("\r\n");
        c->len = 0;
        con_puts("> ");
    } else if (ch == 8 || ch == 127) {
        if (c->len) {
            do c->len--; while (c->len && (c->line[c->len] & 0xC0u) == 0x80u);   /* a whole UTF-8 character */
            con_puts("\b \b");
        }
    } else if (ch >= 0x20 && c->len < TSL_CON_LINE) {
        c->line[c->len++] = ch;
        con_write(&ch, 1);
    }
}
#endif
