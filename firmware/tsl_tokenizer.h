/* tsl_tokenizer: table-driven token decoding and BPE encoding that give the same ids and text as the
 * Hugging Face `tokenizers` library (and tinyslm.tokenizer) -- or refuse with a negative code.
 * Portable C99, no malloc, freestanding: no libc (stdint.h only).
 *
 * Tables (made by tinyslm.tokenizer.Tokenizer.c_tables(), written as C by .c_source()):
 *   blob        uint8_t[]           the bytes of every token, concatenated in id order
 *   offsets     uint32_t[vocab + 1] token i is blob[offsets[i] .. offsets[i + 1]); special tokens
 *                                   (BOS, EOS, ...) and unused ids are empty
 *   merges      int32_t[n_merges*3] (left, right, merged) token ids, sorted by (left, right)
 *   merge_rank  int32_t[n_merges]   priority of merges[i]: lower merges first (its line in tokenizer.json)
 *   byte_to_id  int32_t[256]        byte-level: the token of each byte; SentencePiece: the <0xNN> byte-fallback
 *                                   token of each byte; -1 if none. NULL: no encoder (tsl_tokenizer_encode
 *                                   returns TSL_TOK_ERR_NO_ENCODER; the generated file says why)
 *   ranges      uint32_t[2*sum(n_ranges)] sorted [first, last] code point ranges of \p{L}, then \p{N}, then
 *                                   \s, then the code points NFC may change (only with TSL_TOK_NFC)
 *   char_cp/char_id                 SentencePiece: the one-character tokens, sorted by code point
 *   word_blob/word_offsets/word_id  ignore_merges: the vocab tokens by their bytes (byte-level: the bytes
 *                                   they stand for; SentencePiece: UTF-8), sorted bytewise
 *   needle_blob/needle_offsets      byte strings that an added token's match needs (see below)
 *
 * Encoding (tsl_tokenizer_encode), step by step as tokenizers does it:
 *   1. UTF-8 -> code points (invalid UTF-8: TSL_TOK_ERR_UTF8).
 *   2. Normalizer. Byte-level: none, or NFC -- text that NFC could change (a combining mark, a character
 *      that composes with the one before it, a singleton...) is refused (TSL_TOK_ERR_NOT_NFC), so an
 *      accepted text is its own NFC. SentencePiece: ' ' -> space_cp (U+2581 '▁'), prepend prepend_cp
 *      (Metaspace: unless the text starts with it; TSL_TOK_PREPEND_ALWAYS: a Prepend normalizer, always).
 *   3. Pre-tokenizer. TSL_TOK_SPLIT_DIGITS (Digits(individual_digits)): every \p{N} is a piece of its own.
 *      split = TSL_TOK_SPLIT_GPT2:
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      split = TSL_TOK_SPLIT_LLAMA3 (Llama-3 with max_digits 3, Qwen2 with max_digits 1):
 *        (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 *        \s*[\r\n]+|\s+(?!\S)|\s+
 *      Both are matched by hand with the regex semantics (leftmost alternative, greedy with backtracking).
 *      TSL_TOK_ADD_PREFIX_SPACE (ByteLevel add_prefix_space): a ' ' before a text that does not start with one.
 *      TSL_TOK_METASPACE_SPLIT: a new piece starts at every space_cp.
 *   4. BPE within each pre-token. The symbols: byte-level, each byte's token; SentencePiece, each
 *      character's token, else (TSL_TOK_BYTE_FALLBACK) its UTF-8 bytes' <0xNN> tokens; without either the
 *      unk token (TSL_TOK_FUSE_UNK: one for a run) or nothing. TSL_TOK_IGNORE_MERGES: a pre-token that is a
 *      vocab token is that token. Then the lowest-rank merge (leftmost on ties) until none applies.
 * What the tokenizer.json of a model may contain and the C encoder does not do, c_tables() turns into
 * "no encoder" (byte_to_id NULL): other normalizers (Lowercase, NFKC, ...), other split regexes,
 * continuing_subword_prefix / end_of_word_suffix, BPE over other pre-tokenizers (Whitespace, Punctuation...).
 * Added tokens (<|endoftext|>, ...) are not split out of the text: a text that contains what an added
 * token needs to match (needle_*) is refused with TSL_TOK_ERR_ADDED_TOKEN; insert their ids yourself.
 *
 * Decoding (tsl_tokenizer_decode): the tokens' bytes, special tokens and ids out of range skipped, plus
 * decode_rule: TSL_TOK_DECODE_JOIN_SPACE (no decoder: tokens joined by ' '), TSL_TOK_DECODE_STRIP (a Strip
 * decoder after Fuse: up to strip_start leading and strip_stop trailing strip_byte removed),
 * TSL_TOK_DECODE_METASPACE_FIRST (the Metaspace decoder drops the first token's '▁'), or
 * TSL_TOK_DECODE_UNSUPPORTED (decode returns TSL_TOK_ERR_NO_DECODER; tsl_token_decode still works).
 * The text equals tokenizers' decode whenever it is valid UTF-8 (tokenizers writes U+FFFD for broken
 * sequences; here they stay bytes), e.g. always for ids from tsl_tokenizer_encode.
 */
#ifndef TSL_TOKENIZER_H
#define TSL_TOKENIZER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* flags */
#define TSL_TOK_SPLIT_DIGITS 1
#define TSL_TOK_ADD_PREFIX_SPACE 2
#define TSL_TOK_IGNORE_MERGES 4
#define TSL_TOK_BYTE_FALLBACK 8
#define TSL_TOK_FUSE_UNK 16
#define TSL_TOK_NFC 32
#define TSL_TOK_METASPACE_SPLIT 64
#define TSL_TOK_PREPEND_ALWAYS 128
/* mode */
#define TSL_TOK_MODE_NONE 0
#define TSL_TOK_MODE_BYTE_LEVEL 1
#define TSL_TOK_MODE_SENTENCEPIECE 2
/* split */
#define TSL_TOK_SPLIT_NONE 0
#define TSL_TOK_SPLIT_GPT2 1
#define TSL_TOK_SPLIT_LLAMA3 2
/* decode_rule */
#define TSL_TOK_DECODE_UNSUPPORTED (-1)
#define TSL_TOK_DECODE_CONCAT 0
#define TSL_TOK_DECODE_JOIN_SPACE 1
#define TSL_TOK_DECODE_STRIP 2
#define TSL_TOK_DECODE_METASPACE_FIRST 3
/* errors (negative returns) */
#define TSL_TOK_ERR_NO_ENCODER (-1)   /* tables without encoder, or an unknown mode/split */
#define TSL_TOK_ERR_IDS (-2)          /* ids[] too small */
#define TSL_TOK_ERR_WORK (-3)         /* work[] too small */
#define TSL_TOK_ERR_UTF8 (-4)         /* text is not valid UTF-8 */
#define TSL_TOK_ERR_NOT_NFC (-5)      /* TSL_TOK_NFC and the text has a character NFC may change */
#define TSL_TOK_ERR_ADDED_TOKEN (-6)  /* the text may contain an added token */
#define TSL_TOK_ERR_NO_DECODER (-7)   /* decode_rule TSL_TOK_DECODE_UNSUPPORTED */
#define TSL_TOK_ERR_OUT (-8)          /* out[] too small */

/* Buffer sizes for a text of len bytes: always enough, usually far more than the result needs.
 * work: one word per code point plus the prepended one. ids: the result, and during BPE one id per
 * byte of the current pre-token (SentencePiece: a ' ' becomes '▁', 3 byte-fallback tokens if '▁' is
 * not in the vocab). */
#define TSL_TOK_WORK_WORDS(len) ((len) + 1)
#define TSL_TOK_MAX_IDS(len) (3 * (len) + 4)

typedef struct {
    const uint8_t *blob;
    const uint32_t *offsets;
    int32_t vocab;
    const int32_t *merges;      /* n_merges x 3: left, right, merged; sorted by (left, right) */
    const int32_t *merge_rank;
    int32_t n_merges;
    const int32_t *byte_to_id;  /* 256 entries, or NULL: no encoder */
    int32_t flags;              /* TSL_TOK_SPLIT_DIGITS ... */
    int32_t mode;               /* TSL_TOK_MODE_* */
    int32_t split;              /* TSL_TOK_SPLIT_* */
    int32_t max_digits;         /* TSL_TOK_SPLIT_LLAMA3: \p{N}{1,max_digits} */
    const uint32_t *ranges;     /* [first, last] pairs: n_ranges[0] letters, [1] numbers, [2] spaces, */
                                /* [3] not NFC-safe */
    int32_t n_ranges[4];
    const uint32_t *char_cp;    /* n_chars, sorted */
    const int32_t *char_id;
    int32_t n_chars;
    const uint8_t *word_blob;   /* word i is word_blob[word_offsets[i] .. word_offsets[i + 1]) */
    const uint32_t *word_offsets;
    const int32_t *word_id;
    int32_t n_words;
    const uint8_t *needle_blob; /* needle i is needle_blob[needle_offsets[i] .. needle_offsets[i + 1]) */
    const uint32_t *needle_offsets;
    int32_t n_needles;
    int32_t unk_id;             /* -1: none */
    uint32_t space_cp;          /* SentencePiece: replaces ' ' (0: none) */
    uint32_t prepend_cp;        /* SentencePiece: prepended (0: none) */
    int32_t decode_rule;        /* TSL_TOK_DECODE_* */
    int32_t strip_byte, strip_start, strip_stop;
} tsl_tokenizer;

/* Sets *bytes to token id's bytes and returns their count; -1 (and *bytes = blob) if id is out of range. */
int32_t tsl_token_decode(const tsl_tokenizer *t, int32_t id, const uint8_t **bytes);

/* Encodes text[0..len) into ids[0..max_ids); returns the number of ids or a TSL_TOK_ERR_* code.
 * work: work_words >= TSL_TOK_WORK_WORDS(len) words; max_ids >= TSL_TOK_MAX_IDS(len) always suffices. */
int32_t tsl_tokenizer_encode(const tsl_tokenizer *t, const uint8_t *text, int32_t len, int32_t *ids,
                             int32_t max_ids, uint32_t *work, int32_t work_words);

/* Writes the text of ids[0..n) to out[0..cap); returns its length in bytes or a TSL_TOK_ERR_* code. */
int32_t tsl_tokenizer_decode(const tsl_tokenizer *t, const int32_t *ids, int32_t n, uint8_t *out, int32_t cap);

#ifdef __cplusplus
}
#endif
#endif
