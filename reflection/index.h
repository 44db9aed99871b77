/* SPDX-License-Identifier: Apache-2.0
 *
 * index.h (private to reflection/): the built-in descriptor set read once
 * into files (name, serialized FileDescriptorProto, dependencies) and a
 * sorted table of every symbol they define, by full name. The descriptor
 * set is the program's own (protoc's output, built in), but it is read
 * with bounds checks all the same: a broken one is an error, not a crash.
 * Depends on libc only.
 */
#ifndef TGR_INDEX_H
#define TGR_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* More than the built-in set holds; a larger set is refused. */
#define TGR_MAX_FILES 16
#define TGR_MAX_DEPS 16
/* Longest full name indexed (and so the longest one that can be found). */
#define TGR_NAME_MAX 512

typedef enum tgr_kind {
    TGR_SERVICE,
    TGR_METHOD,
    TGR_MESSAGE,
    TGR_FIELD,
    TGR_ONEOF,
    TGR_ENUM,
    TGR_ENUM_VALUE,
    TGR_EXTENSION,
} tgr_kind;

typedef struct tgr_file {
    const uint8_t *name; /* "taskgrid/v1/taskgrid.proto", in the set */
    size_t name_len;
    const uint8_t *bytes; /* the serialized FileDescriptorProto */
    size_t len;
    size_t deps[TGR_MAX_DEPS]; /* indices of the files it imports */
    size_t ndeps;
} tgr_file;

typedef struct tgr_sym {
    uint32_t off, len; /* the full name, in tgr_index.names */
    uint16_t file;
    uint8_t kind; /* tgr_kind */
} tgr_sym;

typedef struct tgr_index {
    tgr_file files[TGR_MAX_FILES];
    size_t nfiles;
    char *names; /* every full name, back to back */
    size_t names_len, names_cap;
    tgr_sym *syms; /* sorted by name */
    size_t nsyms, syms_cap;
} tgr_index;

/**
 * Read the FileDescriptorSet of `len` bytes at `set` (borrowed: it must
 * outlive the index) into `x` (zeroed first). Every import must be a file
 * of the set.
 * @return TG_OK; TG_EINTERNAL naming what is wrong; TG_ENOMEM.
 */
int tgr_index_build(tgr_index *x, const uint8_t *set, size_t len);

/** Free what tgr_index_build allocated. */
void tgr_index_free(tgr_index *x);

/** The symbol named `name` (`len` bytes, no leading dot), or NULL. */
const tgr_sym *tgr_index_find(const tgr_index *x, const uint8_t *name,
                              size_t len);

/** The index of the file named `name`, or -1. */
int tgr_index_file(const tgr_index *x, const uint8_t *name, size_t len);

/**
 * File `f` and every file it imports, directly or not, each once, `f`
 * first: their indices in `out` (room for TGR_MAX_FILES).
 * @return how many.
 */
size_t tgr_index_closure(const tgr_index *x, size_t f, size_t *out);

#endif
