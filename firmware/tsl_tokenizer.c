/* Table-driven decode and byte-level BPE encode; tables and the exact encoder contract: tsl_tokenizer.h */
#include "tsl_tokenizer.h"

enum { C_LETTER, C_DIGIT, C_SPACE, C_OTHER };

static int byte_class(uint8_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return C_LETTER;
    if (c >= '0' && c <= '9') return C_DIGIT;
    if (c == ' ' || (c >= '\t' && c <= '\r')) return C_SPACE;
    return C_OTHER;
}

int32_t tsl_token_decode(const tsl_tokenizer *t, int32_t id, const uint8_t **bytes) {
    if (id < 0 || id >= t->vocab) {
        *bytes = t->blob;
        return -1;
    }
    *bytes = t->blob + t->offsets[id];
    return (int32_t)(t->offsets[id + 1] - t->offsets[id]);
}

/* Length of the GPT-2 pre-token at s[0..n), n >= 1:
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static int32_t pretoken_len(const uint8_t *s, int32_t n) {
    int32_t i, j;
    if (s[0] == '\'' && n >= 2) {
        uint8_t a = s[1], b = n >= 3 ? s[2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    i = (s[0] == ' ' && n >= 2 && byte_class(s[1]) != C_SPACE) ? 1 : 0;
    if (byte_class(s[i]) != C_SPACE) {
        int c = byte_class(s[i]);
        j = i + 1;
        while (j < n && byte_class(s[j]) == c) j++;
        return j;
    }
    j = 1;
    while (j < n && byte_class(s[j]) == C_SPACE) j++;
    /* a run followed by non-space leaves its last char to the next pre-token, unless it is that char */
    return (j == n || j == 1) ? j : j - 1;
}

/* merged id of (left, right), its rank in *rank; -1 if no merge */
static int32_t find_merge(const tsl_tokenizer *t, int32_t left, int32_t right, int32_t *rank) {
    int32_t lo = 0, hi = t->n_merges - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        const int32_t *m = t->merges + 3 * mid;
        if (m[0] == left && m[1] == right) {
            *rank = t->merge_rank[mid];
            return m[2];
        }
        if (m[0] < left || (m[0] == left && m[1] < right)) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* BPE of one pre-token into out[0..room); returns the count or -1 if out of room */
static int32_t bpe(const tsl_tokenizer *t, const uint8_t *s, int32_t k, int32_t *out, int32_t room) {
    int32_t n = 0, i;
    for (i = 0; i < k; i++) {
        int32_t id = t->byte_to_id[s[i]];
        if (id < 0) continue;
        if (n >= room) return -1;
        out[n++] = id;
    }
    for (;;) {
        int32_t best = -1, best_rank = 0, best_id = 0;
        for (i = 0; i + 1 < n; i++) {
            int32_t rank, id = find_merge(t, out[i], out[i + 1], &rank);
            if (id >= 0 && (best < 0 || rank < best_rank)) {
                best = i;
                best_rank = rank;
                best_id = id;
            }
        }
        if (best < 0) return n;
        out[best] = best_id;
        for (i = best + 1; i + 1 < n; i++) out[i] = out[i + 1];
        n--;
    }
}

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

int32_t tsl_tokenizer_encode(const tsl_tokenizer *t, const uint8_t *text, int32_t len, int32_t *ids,
                             int32_t max_ids) {
    int32_t n = 0, pos = 0;
    if (!t->byte_to_id || len < 0 || max_ids < 0) return -1;
    while (pos < len) {
        /* pre-tokens never cross a segment end: with TSL_TOK_SPLIT_DIGITS each digit is a segment */
        int32_t end = len;
        if (t->flags & TSL_TOK_SPLIT_DIGITS) {
            end = pos + 1;
            if (!is_digit(text[pos]))
                while (end < len && !is_digit(text[end])) end++;
        }
        while (pos < end) {
            int32_t k = pretoken_len(text + pos, end - pos);
            int32_t m = bpe(t, text + pos, k, ids + n, max_ids - n);
            if (m < 0) return -1;
            n += m;
            pos += k;
        }
    }
    return n;
}
