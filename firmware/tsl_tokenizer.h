/* tsl_tokenizer: table-driven token decoding and byte-level BPE encoding.
 * Portable C99, no malloc, freestanding: no libc (stdint.h only).
 *
 * Tables (made by tinyslm.tokenizer.Tokenizer.c_tables(), written as C by .c_source()):
 *   blob        uint8_t[]           the bytes of every token, concatenated in id order
 *   offsets     uint32_t[vocab + 1] token i is blob[offsets[i] .. offsets[i + 1]); special tokens
 *                                   (BOS, EOS, ...) and unused ids are empty
 *   merges      int32_t[n_merges*3] (left, right, merged) token ids, sorted by (left, right)
 *   merge_rank  int32_t[n_merges]   priority of merges[i]: lower merges first (its line in tokenizer.json)
 *   byte_to_id  int32_t[256]        the token of each single byte, -1 if none; NULL when the model is not
 *                                   byte-level BPE (SentencePiece style): tsl_tokenizer_encode then returns -1
 *   flags                           TSL_TOK_SPLIT_DIGITS: every digit is a pre-token of its own
 *                                   (a Digits(individual_digits) pre-tokenizer, as in SmolLM)
 * A token's bytes are what it adds in the middle of a stream: "▁" is already a space, <0xNN> the byte NN.
 * They may end inside a UTF-8 character that the next token completes.
 *
 * Encoding is byte-level BPE: pre-tokens by the GPT-2 rules ('s 't 're 've 'm 'll 'd, " ?letters",
 * " ?digits", " ?other", whitespace runs whose last space joins the next word), then within each pre-token
 * the lowest-rank merge (leftmost on ties) until none applies. It equals the Python/Hugging Face encoder on
 * ASCII text of a GPT-2-style tokenizer (ByteLevel pre-tokenizer, optionally after Digits), and differs:
 *   - on non-ASCII text: every byte >= 0x80 counts as a letter, so non-ASCII digits, punctuation and
 *     whitespace (U+00A0, U+3000, "—", "“", "½", emoji, ...) join neighbouring letters' pre-tokens;
 *   - on tokenizers with another regex (a Split pre-tokenizer: Llama-3, Qwen2 split digits 1-3 at a time and
 *     match contractions case-insensitively), a normalizer (NFC, ...), add_prefix_space, or ignore_merges
 *     (a whole pre-token in the vocab is taken as is in Python, merged pair by pair here);
 *   - added/special tokens written in the text ("<|endoftext|>") are encoded as plain text;
 *   - bytes without a token are dropped (Python would emit the unk token, if the model has one).
 */
#ifndef TSL_TOKENIZER_H
#define TSL_TOKENIZER_H

#include <stdint.h>

#define TSL_TOK_SPLIT_DIGITS 1

typedef struct {
    const uint8_t *blob;
    const uint32_t *offsets;
    int32_t vocab;
    const int32_t *merges;      /* n_merges x 3: left, right, merged; sorted by (left, right) */
    const int32_t *merge_rank;
    int32_t n_merges;
    const int32_t *byte_to_id;  /* 256 entries, or NULL: no encoder */
    int32_t flags;
} tsl_tokenizer;

/* Sets *bytes to token id's bytes and returns their count; -1 (and *bytes = blob) if id is out of range. */
int32_t tsl_token_decode(const tsl_tokenizer *t, int32_t id, const uint8_t **bytes);

/* Encodes text[0..len) into ids[0..max_ids); returns the number of ids, or -1 if the tokenizer has no
 * encoder or ids[] is too small (merging needs room for one id per byte of the current pre-token). */
int32_t tsl_tokenizer_encode(const tsl_tokenizer *t, const uint8_t *text, int32_t len, int32_t *ids,
                             int32_t max_ids);

#endif
