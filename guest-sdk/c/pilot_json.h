/* The SDK's internal JSON reader (not part of the API: use the pilot_params_* getters). */
#ifndef PILOT_JSON_H
#define PILOT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pilot_common.h"

typedef enum {
    PILOT_JSON_NULL,
    PILOT_JSON_BOOL,
    PILOT_JSON_NUMBER,
    PILOT_JSON_STRING,
    PILOT_JSON_ARRAY,
    PILOT_JSON_OBJECT,
} pilot_json_type_t;

typedef struct {
    pilot_json_type_t type;
    bool boolean;
    double number;
    bool is_u64; /* a non-negative whole number written without fraction or exponent */
    uint64_t u64;
    char *string;    /* decoded, for strings */
    const char *raw; /* the value's text, for messages */
    size_t raw_len;
} pilot_json_value_t;

typedef struct {
    char *key;
    pilot_json_value_t value;
} pilot_json_member_t;

/* A parsed document: the whole value, and the members when it is an object. */
typedef struct {
    pilot_json_value_t whole;
    pilot_json_member_t *members;
    size_t len;
} pilot_json_t;

/* Parses `text`; on failure writes why into `error` and returns false. */
bool pilot_json_parse(const char *text, size_t len, pilot_json_t *out, char *error, size_t error_len);
/* Returns the member `key`, or NULL when it is missing or null. */
const pilot_json_value_t *pilot_json_get(const pilot_json_t *json, const char *key);
void pilot_json_free(pilot_json_t *json);

/* A params mapping (pilot_common.h): the scope named in messages and the parsed JSON. */
struct pilot_params {
    const char *scope;
    pilot_json_t json;
};

/* Parses `text` as a mapping (or null) named `scope` in messages; an error is INVALID_CONFIG. */
pilot_result_t pilot_params_parse(const char *text, size_t len, const char *scope, struct pilot_params *out);
/* Frees what pilot_params_parse() allocated. */
void pilot_params_free(struct pilot_params *params);

#endif
