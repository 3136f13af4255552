/* Table-driven decode and BPE encode; tables and the exact encoder contract: tsl_tokenizer.h */
#include "tsl_tokenizer.h"

/* work[] word: code point in bits 0-20, its classes above */
#define CP(w) ((w) & 0x1FFFFFu)
#define IS_L(w) (((w) >> 24) & 1u)
#define IS_N(w) (((w) >> 25) & 1u)
#define IS_S(w) (((w) >> 26) & 1u)
#define IS_OTHER(w) ((((w) >> 24) & 7u) == 0)
#define CLASSES(w) (((w) >> 24) & 7u)

int32_t tsl_token_decode(const tsl_tokenizer *t, int32_t id, const uint8_t **bytes) {
    if (id < 0 || id >= t->vocab) {
        *bytes = t->blob;
        return -1;
    }
    *bytes = t->blob + t->offsets[id];
    return (int32_t)(t->offsets[id + 1] - t->offsets[id]);
}

/* ---- characters ---- */

static int in_ranges(const uint32_t *r, int32_t n, uint32_t cp) {
    int32_t lo = 0, hi = n - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (cp < r[2 * mid]) hi = mid - 1;
        else if (cp > r[2 * mid + 1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* class bits of cp: \p{L}, \p{N}, \s as the tokenizer's regexes see them */
static uint32_t classes(const tsl_tokenizer *t, uint32_t cp) {
    const uint32_t *r = t->ranges;
    uint32_t c = 0;
    if (!r) return 0;
    if (in_ranges(r, t->n_ranges[0], cp)) c |= 1u << 24;
    r += 2 * t->n_ranges[0];
    if (in_ranges(r, t->n_ranges[1], cp)) c |= 1u << 25;
    r += 2 * t->n_ranges[1];
    if (in_ranges(r, t->n_ranges[2], cp)) c |= 1u << 26;
    return c;
}

static int nfc_unsafe(const tsl_tokenizer *t, uint32_t cp) {
    if (!t->ranges) return 0;
    return in_ranges(t->ranges + 2 * (t->n_ranges[0] + t->n_ranges[1] + t->n_ranges[2]), t->n_ranges[3], cp);
}

/* strict UTF-8 -> code points into w[0..cap); returns the count, TSL_TOK_ERR_UTF8 or TSL_TOK_ERR_WORK */
static int32_t utf8_decode(const uint8_t *s, int32_t len, uint32_t *w, int32_t cap) {
    int32_t i = 0, n = 0;
    while (i < len) {
        uint32_t c = s[i], min;
        int32_t k, more;
        if (c < 0x80) { more = 0; min = 0; }
        else if ((c & 0xE0) == 0xC0) { more = 1; c &= 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { more = 2; c &= 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { more = 3; c &= 0x07; min = 0x10000; }
        else return TSL_TOK_ERR_UTF8;
        if (more && i + more >= len) return TSL_TOK_ERR_UTF8;
        for (k = 1; k <= more; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return TSL_TOK_ERR_UTF8;
            c = (c << 6) | (s[i + k] & 0x3Fu);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return TSL_TOK_ERR_UTF8;
        if (n >= cap) return TSL_TOK_ERR_WORK;
        w[n++] = c;
        i += more + 1;
    }
    return n;
}

static int utf8_encode(uint32_t c, uint8_t *u) {
    if (c < 0x80) { u[0] = (uint8_t)c; return 1; }
    if (c < 0x800) { u[0] = (uint8_t)(0xC0 | (c >> 6)); u[1] = (uint8_t)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        u[0] = (uint8_t)(0xE0 | (c >> 12)); u[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    u[0] = (uint8_t)(0xF0 | (c >> 18)); u[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    u[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)); u[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* ---- pre-tokenizer regexes: end of the match at w[i], i < n; the piece ends at n ---- */

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static int32_t match_gpt2(const uint32_t *w, int32_t i, int32_t n) {
    int32_t j, k;
    if (CP(w[i]) == '\'' && i + 1 < n) {
        uint32_t a = CP(w[i + 1]), b = i + 2 < n ? CP(w[i + 2]) : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    j = (CP(w[i]) == ' ' && i + 1 < n && !IS_S(w[i + 1])) ? i + 1 : i;
    if (!IS_S(w[j])) {  /* letters, numbers or other: a run of that class */
        uint32_t c = CLASSES(w[j]);
        for (k = j + 1; k < n && CLASSES(w[k]) == c; k++) {}
        return k;
    }
    for (k = i + 1; k < n && IS_S(w[k]); k++) {}
    /* \s+(?!\S) backs off one char before a non-space; a single one is \s+ */
    return (k == n || k == i + 1) ? k : k - 1;
}

static uint32_t fold(uint32_t c) {  /* simple case folding of the letters in the contractions */
    if (c >= 'A' && c <= 'Z') return c + 32;
    return c == 0x17F ? 's' : c;     /* U+017F LATIN SMALL LETTER LONG S folds to s */
}

static int is_crlf(uint32_t w) { return CP(w) == '\r' || CP(w) == '\n'; }

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
 * \s+(?!\S)|\s+ */
static int32_t match_llama3(const uint32_t *w, int32_t i, int32_t n, int32_t max_digits) {
    int32_t j, k, last;
    if (CP(w[i]) == '\'' && i + 1 < n) {
        uint32_t a = fold(CP(w[i + 1])), b = i + 2 < n ? fold(CP(w[i + 2])) : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    j = -1;
    if (IS_L(w[i])) j = i;
    else if (!IS_N(w[i]) && !is_crlf(w[i]) && i + 1 < n && IS_L(w[i + 1])) j = i + 1;
    if (j >= 0) {
        for (k = j + 1; k < n && IS_L(w[k]); k++) {}
        return k;
    }
    if (IS_N(w[i])) {
        for (k = i + 1; k < n && k < i + max_digits && IS_N(w[k]); k++) {}
        return k;
    }
    j = (CP(w[i]) == ' ' && i + 1 < n && IS_OTHER(w[i + 1])) ? i + 1 : i;
    if (IS_OTHER(w[j])) {
        for (k = j + 1; k < n && IS_OTHER(w[k]); k++) {}
        while (k < n && is_crlf(w[k])) k++;
        return k;
    }
    /* w[i] is whitespace */
    last = -1;
    for (k = i; k < n && IS_S(w[k]); k++)
        if (is_crlf(w[k])) last = k;
    if (last >= 0) return last + 1;  /* \s*[\r\n]+: up to the run's last \r or \n */
    return (k == n || k == i + 1) ? k : k - 1;
}

/* ---- BPE ---- */

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

static int32_t find_char(const tsl_tokenizer *t, uint32_t cp) {
    int32_t lo = 0, hi = t->n_chars - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (t->char_cp[mid] == cp) return t->char_id[mid];
        if (t->char_cp[mid] < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* sign of (word key) - (UTF-8 of w[a..b)) */
static int cmp_word(const uint8_t *key, uint32_t klen, const uint32_t *w, int32_t a, int32_t b) {
    uint32_t i = 0;
    uint8_t u[4];
    for (; a < b; a++) {
        int j, nb = utf8_encode(CP(w[a]), u);
        for (j = 0; j < nb; j++, i++) {
            if (i == klen) return -1;
            if (key[i] != u[j]) return key[i] < u[j] ? -1 : 1;
        }
    }
    return i == klen ? 0 : 1;
}

static int32_t find_word(const tsl_tokenizer *t, const uint32_t *w, int32_t a, int32_t b) {
    int32_t lo = 0, hi = t->n_words - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        uint32_t o = t->word_offsets[mid];
        int c = cmp_word(t->word_blob + o, t->word_offsets[mid + 1] - o, w, a, b);
        if (c == 0) return t->word_id[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* BPE of the pre-token w[a..b) into out[0..room); returns the count or TSL_TOK_ERR_IDS */
static int32_t bpe(const tsl_tokenizer *t, const uint32_t *w, int32_t a, int32_t b, int32_t *out, int32_t room) {
    int32_t n = 0, i, unk = -1;
    int byte_level = t->mode == TSL_TOK_MODE_BYTE_LEVEL;
    if ((t->flags & TSL_TOK_IGNORE_MERGES) && t->n_words > 0) {
        int32_t id = find_word(t, w, a, b);
        if (id >= 0) {
            if (room < 1) return TSL_TOK_ERR_IDS;
            out[0] = id;
            return 1;
        }
    }
    for (i = a; i < b; i++) {
        uint8_t u[4];
        int j, nb = utf8_encode(CP(w[i]), u);
        for (j = 0; j < (byte_level ? nb : 1); j++) {  /* byte-level: a symbol per byte; else per character */
            int32_t id = byte_level ? t->byte_to_id[u[j]] : find_char(t, CP(w[i]));
            if (id >= 0) {
                if (n + 2 > room) return TSL_TOK_ERR_IDS;
                if (unk >= 0) out[n++] = unk;
                unk = -1;
                out[n++] = id;
                continue;
            }
            if (!byte_level && (t->flags & TSL_TOK_BYTE_FALLBACK)) {
                int k, all = 1;
                for (k = 0; k < nb; k++) all = all && t->byte_to_id[u[k]] >= 0;
                if (all) {  /* a pending unk stays pending, as in tokenizers */
                    if (n + nb > room) return TSL_TOK_ERR_IDS;
                    for (k = 0; k < nb; k++) out[n++] = t->byte_to_id[u[k]];
                    continue;
                }
            }
            if (t->unk_id >= 0) {
                if (unk >= 0 && !(t->flags & TSL_TOK_FUSE_UNK)) {
                    if (n + 1 > room) return TSL_TOK_ERR_IDS;
                    out[n++] = unk;
                }
                unk = t->unk_id;
            }
        }
    }
    if (unk >= 0) {
        if (n + 1 > room) return TSL_TOK_ERR_IDS;
        out[n++] = unk;
    }
    for (;;) {  /* the lowest-rank merge, leftmost on ties, as tokenizers' Word::merge_all */
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

/* ---- encode ---- */

static int has_needle(const tsl_tokenizer *t, const uint8_t *text, int32_t len) {
    int32_t k, i;
    for (k = 0; k < t->n_needles; k++) {
        const uint8_t *nd = t->needle_blob + t->needle_offsets[k];
        int32_t m = (int32_t)(t->needle_offsets[k + 1] - t->needle_offsets[k]);
        for (i = 0; i + m <= len; i++) {
            int32_t j = 0;
            while (j < m && text[i + j] == nd[j]) j++;
            if (j == m && m > 0) return 1;
        }
    }
    return 0;
}

int32_t tsl_tokenizer_encode(const tsl_tokenizer *t, const uint8_t *text, int32_t len, int32_t *ids,
                             int32_t max_ids, uint32_t *work, int32_t work_words) {
    int32_t n, i, pos, start, count = 0;
    int byte_level = t->mode == TSL_TOK_MODE_BYTE_LEVEL;
    if (!t->byte_to_id || (!byte_level && t->mode != TSL_TOK_MODE_SENTENCEPIECE) || t->split < 0 ||
        t->split > TSL_TOK_SPLIT_LLAMA3 || (t->split && !t->ranges))
        return TSL_TOK_ERR_NO_ENCODER;
    if (len < 0 || max_ids < 0 || work_words < 1) return len < 0 || max_ids < 0 ? TSL_TOK_ERR_IDS : TSL_TOK_ERR_WORK;
    if (len == 0) return 0;
    if (has_needle(t, text, len)) return TSL_TOK_ERR_ADDED_TOKEN;
    /* code points at work[1..n]; work[0] for a prepended one */
    n = utf8_decode(text, len, work + 1, work_words - 1);
    if (n < 0) return n;
    for (i = 1; i <= n; i++) {
        if ((t->flags & TSL_TOK_NFC) && nfc_unsafe(t, work[i])) return TSL_TOK_ERR_NOT_NFC;
        if (!byte_level && t->space_cp && work[i] == ' ') work[i] = t->space_cp;
    }
    start = 1;
    if (byte_level && (t->flags & TSL_TOK_ADD_PREFIX_SPACE) && work[1] != ' ') {
        work[0] = ' ';
        start = 0;
    }
    if (!byte_level && t->prepend_cp && ((t->flags & TSL_TOK_PREPEND_ALWAYS) || work[1] != t->prepend_cp)) {
        work[0] = t->prepend_cp;
        start = 0;
    }
    n += 1;  /* the text is work[start..n) */
    if (byte_level)
        for (i = start; i < n; i++) work[i] |= classes(t, work[i]);
    pos = start;
    while (pos < n) {
        /* pieces of the pre-tokenizers before the regex; pre-tokens never cross their ends */
        int32_t end = n;
        if (t->flags & TSL_TOK_SPLIT_DIGITS) {
            end = pos + 1;
            if (!IS_N(work[pos]))
                while (end < n && !IS_N(work[end])) end++;
        }
        if (t->flags & TSL_TOK_METASPACE_SPLIT) {
            end = pos + 1;
            while (end < n && CP(work[end]) != t->space_cp) end++;
        }
        while (pos < end) {
            int32_t k = t->split == TSL_TOK_SPLIT_GPT2 ? match_gpt2(work, pos, end)
                      : t->split == TSL_TOK_SPLIT_LLAMA3 ? match_llama3(work, pos, end, t->max_digits)
                      : end;
            int32_t m = bpe(t, work, pos, k, ids + count, max_ids - count);
            if (m < 0) return m;
            count += m;
            pos = k;
        }
    }
    return count;
}

/* ---- decode ---- */

int32_t tsl_tokenizer_decode(const tsl_tokenizer *t, const int32_t *ids, int32_t n, uint8_t *out, int32_t cap) {
    int32_t i, len = 0, first = 1;
    if (t->decode_rule < TSL_TOK_DECODE_CONCAT || t->decode_rule > TSL_TOK_DECODE_METASPACE_FIRST)
        return TSL_TOK_ERR_NO_DECODER;
    for (i = 0; i < n; i++) {
        const uint8_t *p;
        int32_t j, nb = tsl_token_decode(t, ids[i], &p);
        if (nb <= 0) continue;  /* out of range, special or unused */
        if (t->decode_rule == TSL_TOK_DECODE_JOIN_SPACE && !first) {
            if (len >= cap) return TSL_TOK_ERR_OUT;
            out[len++] = ' ';
        }
        for (j = 0; j < nb; j++) {
            if (t->decode_rule == TSL_TOK_DECODE_METASPACE_FIRST && first && p[j] == ' ') continue;
            if (len >= cap) return TSL_TOK_ERR_OUT;
            out[len++] = p[j];
        }
        first = 0;
    }
    if (t->decode_rule == TSL_TOK_DECODE_STRIP) {
        int32_t a = 0, b;
        while (a < t->strip_start && a < len && out[a] == t->strip_byte) a++;
        for (i = a; i < len; i++) out[i - a] = out[i];
        len -= a;
        b = len;
        while (b > 0 && len - b < t->strip_stop && out[b - 1] == t->strip_byte) b--;
        len = b;
    }
    return len;
}
