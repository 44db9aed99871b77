/* SPDX-License-Identifier: Apache-2.0
 *
 * scatter.c: tg_client_scatter and its content keys (tg_scatter_key): the
 * data is the input of one TG_SCATTER_FUNC task, sent through
 * tg_client_submit. SHA-256 from OpenSSL's libcrypto.
 */
#include <openssl/evp.h>
#include <string.h>

#include "client_impl.h"
#include "util/error.h"

/* Room a Submit message needs besides the data (key, function, codec,
 * workers, message framing). */
#define SCATTER_HEADROOM (64u * 1024u)
/* Longest codec prefix of a content key. */
#define SCATTER_PREFIX_MAX 64
/* Hex digits of the digest in a content key. */
#define SCATTER_HEX 32

int tg_scatter_key(char *buf, size_t buflen, const void *data, size_t len,
                   const char *codec)
{
    static const char hex[] = "0123456789abcdef";
    const char *tag = codec != NULL && codec[0] != '\0' ? codec : "raw";
    const char *prefix = strcmp(tag, "raw") == 0 ? "bytes" : tag;
    size_t plen = strnlen(prefix, SCATTER_PREFIX_MAX);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx;
    int ok;

    if (buf == NULL || (data == NULL && len > 0))
        return tg__error_set(TG_EINVAL, "tg_scatter_key: NULL argument");
    if (buflen < plen + 1 + SCATTER_HEX + 1)
        return tg__error_set(TG_EINVAL,
                             "tg_scatter_key: a buffer of %zu bytes is too "
                             "small (%zu needed)",
                             buflen, plen + 1 + SCATTER_HEX + 1);
    ctx = EVP_MD_CTX_new();
    ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, tag, strlen(tag) + 1) == 1 &&
         (len == 0 || EVP_DigestUpdate(ctx, data, len) == 1) &&
         EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen * 2 >= SCATTER_HEX;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return tg__error_set(TG_ENOMEM, "tg_scatter_key: SHA-256 failed");
    memcpy(buf, prefix, plen);
    buf[plen] = '-';
    for (size_t i = 0; i < SCATTER_HEX / 2; i++) {
        buf[plen + 1 + 2 * i] = hex[md[i] >> 4];
        buf[plen + 2 + 2 * i] = hex[md[i] & 15];
    }
    buf[plen + 1 + SCATTER_HEX] = '\0';
    return TG_OK;
}

int tg_client_scatter(tg_client *c, const void *data, size_t len,
                      const char *codec, const char *const *workers,
                      size_t nworkers, tg_future **out)
{
    tg_task_def t = TG_TASK_DEF_INIT;
    char key[TG_SCATTER_KEY_MAX];
    size_t limit;
    int rc;

    if (c == NULL || out == NULL)
        return tg__error_set(TG_EINVAL,
                             "tg_client_scatter: client or out is NULL");
    rc = tg_scatter_key(key, sizeof(key), data, len, codec);
    if (rc != TG_OK)
        return rc;
    limit = c->max_message > SCATTER_HEADROOM
                ? c->max_message - SCATTER_HEADROOM
                : 0;
    if (len > limit)
        return tg__error_set(TG_ETOOBIG,
                             "cannot scatter '%s': it is %zu bytes, over the "
                             "%zu-byte limit of one Submit message "
                             "(scattered data crosses the scheduler once); "
                             "make it in a task instead",
                             key, len, limit);
    t.key = key;
    t.func = TG_SCATTER_FUNC;
    t.input = data;
    t.input_len = len;
    t.codec = codec != NULL ? codec : "raw";
    t.workers = workers;
    t.nworkers = nworkers;
    return tg_client_submit(c, &t, 1, out);
}
