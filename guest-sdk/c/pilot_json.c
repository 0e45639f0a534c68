/*
 * The JSON reader behind pilot_params_t: parses `ready_params` / config text into its top-level
 * members, with typed getters whose errors name the key and the value, as the Rust SDK's do.
 */
#include "pilot_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *text;
    size_t pos;
    size_t len;
    char error[160];
} parser_t;

static void fail(parser_t *p, const char *what) {
    if (p->error[0] == '\0') {
        snprintf(p->error, sizeof p->error, "%s at byte %zu", what, p->pos + 1);
    }
}

static void skip_ws(parser_t *p) {
    while (p->pos < p->len && strchr(" \t\r\n", p->text[p->pos]) != NULL) p->pos++;
}

static bool literal(parser_t *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos >= n && memcmp(p->text + p->pos, word, n) == 0) {
        p->pos += n;
        return true;
    }
    fail(p, "expected a value");
    return false;
}

static int hex4(const char *s) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    return v;
}

static size_t utf8(char *out, unsigned cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses a string at `p->pos` (on its opening quote); returns it decoded (malloc'd), or NULL. */
static char *parse_string(parser_t *p) {
    p->pos++; /* the opening quote */
    char *out = malloc(p->len - p->pos + 1);
    size_t n = 0;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->text[p->pos++];
        if (c == '"') { out[n] = '\0'; return out; }
        if (c < 0x20) { p->pos--; fail(p, "control character in a string"); break; }
        if (c != '\\') { out[n++] = (char)c; continue; }
        if (p->pos >= p->len) break;
        char e = p->text[p->pos++];
        char simple = 0;
        switch (e) {
        case '"': case '\\': case '/': simple = e; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        default: break;
        }
        if (simple != 0) {
            out[n++] = simple;
            continue;
        }
        if (e != 'u' || p->len - p->pos < 4 || hex4(p->text + p->pos) < 0) {
            fail(p, "invalid escape in a string");
            break;
        }
        unsigned cp = (unsigned)hex4(p->text + p->pos);
        p->pos += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && p->len - p->pos >= 6 && p->text[p->pos] == '\\' &&
            p->text[p->pos + 1] == 'u' && hex4(p->text + p->pos + 2) >= 0xDC00) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned)hex4(p->text + p->pos + 2) - 0xDC00);
            p->pos += 6;
        }
        n += utf8(out + n, cp);
    }
    fail(p, "unterminated string");
    free(out);
    return NULL;
}

static bool parse_number(parser_t *p, pilot_json_value_t *v) {
    size_t start = p->pos;
    bool integral = true;
    if (p->text[p->pos] == '-') { p->pos++; integral = false; }
    size_t digits = p->pos;
    while (p->pos < p->len && strchr("0123456789", p->text[p->pos]) != NULL) p->pos++;
    if (p->pos == digits) { fail(p, "expected a value"); return false; }
    while (p->pos < p->len && strchr("0123456789.eE+-", p->text[p->pos]) != NULL) {
        integral = false;
        p->pos++;
    }
    char buf[64];
    size_t n = p->pos - start < sizeof buf - 1 ? p->pos - start : sizeof buf - 1;
    memcpy(buf, p->text + start, n);
    buf[n] = '\0';
    char *end = NULL;
    v->type = PILOT_JSON_NUMBER;
    v->number = strtod(buf, &end);
    if (end != buf + n) { fail(p, "invalid number"); return false; }
    v->is_u64 = integral && n < 21;
    if (v->is_u64) v->u64 = strtoull(buf, NULL, 10);
    return true;
}

static bool parse_value(parser_t *p, pilot_json_value_t *v, int depth);

/* Parses an array or object; keeps the members of the top-level object only (`members` non-NULL). */
static bool parse_container(parser_t *p, pilot_json_value_t *v, int depth, pilot_json_t *members) {
    char close = p->text[p->pos] == '{' ? '}' : ']';
    bool object = close == '}';
    v->type = object ? PILOT_JSON_OBJECT : PILOT_JSON_ARRAY;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->text[p->pos] == close) { p->pos++; return true; }
    for (;;) {
        char *key = NULL;
        skip_ws(p);
        if (object) {
            if (p->pos >= p->len || p->text[p->pos] != '"') { fail(p, "expected a key"); return false; }
            if ((key = parse_string(p)) == NULL) return false;
            skip_ws(p);
            if (p->pos >= p->len || p->text[p->pos] != ':') { free(key); fail(p, "expected `:`"); return false; }
            p->pos++;
        }
        pilot_json_value_t item = {0};
        if (!parse_value(p, &item, depth + 1)) { free(key); return false; }
        if (members != NULL && object) {
            members->members = realloc(members->members, (members->len + 1) * sizeof *members->members);
            members->members[members->len].key = key;
            members->members[members->len].value = item;
            members->len++;
        } else {
            free(key);
            free(item.string);
        }
        skip_ws(p);
        if (p->pos < p->len && p->text[p->pos] == ',') { p->pos++; continue; }
        if (p->pos < p->len && p->text[p->pos] == close) { p->pos++; return true; }
        fail(p, object ? "expected `,` or `}`" : "expected `,` or `]`");
        return false;
    }
}

static bool parse_value(parser_t *p, pilot_json_value_t *v, int depth) {
    skip_ws(p);
    if (depth > 64) { fail(p, "nested too deeply"); return false; }
    if (p->pos >= p->len) { fail(p, "expected a value"); return false; }
    size_t start = p->pos;
    bool ok;
    switch (p->text[p->pos]) {
    case 'n': ok = literal(p, "null"); v->type = PILOT_JSON_NULL; break;
    case 't': ok = literal(p, "true"); v->type = PILOT_JSON_BOOL; v->boolean = true; break;
    case 'f': ok = literal(p, "false"); v->type = PILOT_JSON_BOOL; v->boolean = false; break;
    case '"': v->type = PILOT_JSON_STRING; ok = (v->string = parse_string(p)) != NULL; break;
    case '{': case '[': ok = parse_container(p, v, depth, NULL); break;
    default: ok = parse_number(p, v); break;
    }
    v->raw = p->text + start;
    v->raw_len = p->pos - start;
    return ok;
}

bool pilot_json_parse(const char *text, size_t len, pilot_json_t *out, char *error, size_t error_len) {
    parser_t p = {.text = text, .pos = 0, .len = len, .error = {0}};
    memset(out, 0, sizeof *out);
    skip_ws(&p);
    bool ok;
    if (p.pos < len && p.text[p.pos] == '{') {
        ok = parse_container(&p, &out->whole, 0, out);
        out->whole.raw = text;
        out->whole.raw_len = p.pos;
    } else {
        ok = parse_value(&p, &out->whole, 0);
    }
    skip_ws(&p);
    if (ok && p.pos != len) { fail(&p, "trailing characters"); ok = false; }
    if (!ok) {
        snprintf(error, error_len, "%s", p.error);
        pilot_json_free(out);
    }
    return ok;
}

const pilot_json_value_t *pilot_json_get(const pilot_json_t *json, const char *key) {
    for (size_t i = 0; i < json->len; i++) {
        if (strcmp(json->members[i].key, key) == 0) {
            const pilot_json_value_t *v = &json->members[i].value;
            return v->type == PILOT_JSON_NULL ? NULL : v;
        }
    }
    return NULL;
}

void pilot_json_free(pilot_json_t *json) {
    for (size_t i = 0; i < json->len; i++) {
        free(json->members[i].key);
        free(json->members[i].value.string);
    }
    free(json->members);
    free(json->whole.string);
    memset(json, 0, sizeof *json);
}
