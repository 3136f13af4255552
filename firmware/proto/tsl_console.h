/* tsl_console.h -- the text console on the serial firmware's UART (screen, minicom, idf.py monitor,
 * the Arduino serial monitor). A line typed at a frame boundary is a console line: its text is
 * encoded on the device and continued by the model, streaming, with the KV cache kept across lines
 * until /reset or the context is full. Commands: /reset /temp T /topp P /seed S /tokens N /stats
 * /help. It shares the model, the sampler scratch and the encoder's buffers with the binary
 * protocol (tsl_serial_app.c), which tells the two apart by each frame's first byte; any
 * accepted binary request ends the console's conversation (tsl_console_reset). */
#ifndef TSL_CONSOLE_H
#define TSL_CONSOLE_H
#include <stdint.h>
#include "tsl_model.h"
#include "tsl_tokenizer.h"

#define TSL_CON_LINE 200u                /* bytes of a typed line */

typedef struct {
    tsl_model *m;                        /* shared with the protocol */
    const int32_t *status;               /* the model's tsl_init status; nonzero: "model not ready" */
    const tsl_tokenizer *tok;            /* with an encoder (byte_to_id) */
    int32_t *ids;                        /* TSL_TOK_MAX_IDS(TSL_CON_LINE) + 1 or more: n_ids */
    uint32_t *work;                      /* TSL_TOK_WORK_WORDS(TSL_CON_LINE) or more: n_work */
    int32_t n_ids, n_work;
    void *scratch;                       /* TSL_SAMPLER_SCRATCH_BYTES, 4-byte aligned */
    uint8_t line[TSL_CON_LINE];
    uint32_t len;                        /* bytes typed into line */
    uint32_t pos;                        /* positions of the conversation in the KV cache */
    int32_t pending;                     /* the last sampled token, not yet run (-1: none) */
    uint32_t max_tokens, n, n_prefill, prefill, gen;   /* the last answer: tokens, cycles */
    uint32_t t;                          /* cycle count when the current token's step began */
    uint8_t shown, last_cr, touched;     /* touched: ran the model since the protocol last cleared it */
    float temperature, top_p;
    uint64_t seed;
} tsl_console;

/* Settings to their defaults (greedy, 64 tokens an answer), no conversation, no banner shown yet. */
void tsl_console_init(tsl_console *c, tsl_model *m, const int32_t *status, const tsl_tokenizer *tok,
                      int32_t *ids, int32_t n_ids, uint32_t *work, int32_t n_work, void *scratch);
/* One byte from the terminal: echo and edit; Enter runs the line (answers stream to the UART). */
void tsl_console_key(tsl_console *c, uint8_t ch);
/* The conversation ends: the next line starts at position 0 (the settings stay). */
void tsl_console_reset(tsl_console *c);

#endif
