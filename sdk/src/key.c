/* SPDX-License-Identifier: Apache-2.0
 *
 * key.c: task keys made on the client (tg_key_generate): "<function>-<16 hex
 * digits>" from a per-process random seed and a counter, so keys from
 * many clients and processes do not collide. libc only.
 */
#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>

#include "client_impl.h"
#include "methods.h"
#include "util/clock.h"
#include "util/error.h"

/* ------------------------------------------------------------------ */
/* Keys                                                                */
/* ------------------------------------------------------------------ */

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static uint64_t key_seed;
static atomic_uint_fast64_t key_counter;

static void key_reseed(void)
{
    uint64_t s = 0;

    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        s = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)getpid() << 16);
    }
    key_seed = s;
}

static void key_init(void)
{
    key_reseed();
    /* A forked child would otherwise repeat its parent's keys. */
    pthread_atfork(NULL, NULL, key_reseed);
}

/*
 * splitmix64's finaliser is a bijection of 64-bit integers, so distinct
 * counter values give distinct keys: no collision within a process, and
 * keys look random (well spread in the scheduler's hash map).
 */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

size_t tg__key_prefix_len(const char *func)
{
    size_t n = strlen(func);

    return n > TG_KEY_MAX - 17 ? TG_KEY_MAX - 17 : n;
}

/* Write "<func>-<16 hex>" at `buf` (room checked by the caller); returns
 * the key length. */
size_t tg__key_write(char *buf, const char *func)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = tg__key_prefix_len(func);
    uint64_t v;

    pthread_once(&key_once, key_init);
    v = mix64(key_seed + atomic_fetch_add(&key_counter, 1));
    memcpy(buf, func, n);
    buf[n] = '-';
    for (int i = 15; i >= 0; i--) {
        buf[n + 1 + (size_t)i] = hex[v & 15];
        v >>= 4;
    }
    buf[n + 17] = '\0';
    return n + 17;
}

int tg_key_generate(char *buf, size_t buflen, const char *func)
{
    if (buf == NULL || func == NULL)
        return tg__error_set(TG_EINVAL, "tg_key_generate: NULL argument");
    if (buflen < tg__key_prefix_len(func) + 18)
        return tg__error_set(TG_EINVAL,
                             "tg_key_generate: buffer of %zu bytes is too "
                             "small (need %zu)",
                             buflen, tg__key_prefix_len(func) + 18);
    tg__key_write(buf, func);
    return TG_OK;
}
