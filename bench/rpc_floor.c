/* SPDX-License-Identifier: Apache-2.0
 *
 * rpc_floor.c: the physical floor the benchmarks are held against. Two C
 * processes on loopback using taskgrid's own transport (transport/)
 * with no scheduling at all: a unary echo round trip (p50/p99 over N
 * calls), the one-way message rate of a bidirectional stream (N small
 * messages, acknowledged once at the end) and, with --bulk-mb M, the
 * throughput of the same stream carrying M messages of 1 MiB (the size of
 * a data-plane chunk). Prints lines like
 *   case=floor_unary n=1000 run=1 p50_us=41.0 p99_us=80.2
 *   case=floor_stream n=100000 run=1 seconds=0.41 rate=243902.4
 *   case=floor_bulk mb=1024 run=1 seconds=0.9 gbps=1.19
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transport/client.h"
#include "transport/server.h"

static const tg__method methods[] = {
    {"/bench.Floor/Echo", TG__UNARY},
    {"/bench.Floor/Stream", TG__BIDI},
};

typedef struct srv_state {
    size_t received;
    size_t expect;
} srv_state;

static void on_call(void *ud, tg__scall *c, size_t m, const uint8_t *req,
                    size_t len)
{
    (void)ud;
    if (m == 0) {
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, req, len);
        tg__scall_reply(c, copy, len);
    }
}

static void on_message(void *ud, tg__scall *c, const uint8_t *msg, size_t len)
{
    srv_state *s = ud;

    (void)msg;
    (void)len;
    /* The first message carries the count as text. */
    if (s->expect == 0) {
        s->expect = strtoull((const char *)msg, NULL, 10);
        s->received = 0;
        return;
    }
    if (++s->received == s->expect) {
        uint8_t *ack = malloc(1);
        ack[0] = 'k';
        tg__scall_send(c, ack, 1);
        s->expect = 0;
    }
}

static void on_done(void *ud, tg__scall *c)
{
    (void)ud;
    (void)c;
}

static int serve(int port_fd)
{
    srv_state st = {0, 0};
    tg__server_ops ops = {on_call, on_message, on_done, NULL};
    tg__server_opts so = {"tcp://127.0.0.1:0", NULL, 0, 100};
    tg__server *s;
    int port;

    if (tg__server_new(&s, &so, methods, 2, &ops, &st) != TG_OK)
        return 1;
    port = tg__server_port(s);
    if (write(port_fd, &port, sizeof(port)) != sizeof(port))
        return 1;
    close(port_fd);
    tg__server_run(s);
    tg__server_free(s);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* `mb` messages of 1 MiB one way on the stream, acknowledged at the end. */
static int bulk(tg__chan *ch, size_t mb, int run)
{
    size_t size = (size_t)1 << 20, alen;
    uint8_t *msg = malloc(size), *ack;
    struct timespec a, b;
    tg__cstream *s;
    char head[32];
    double secs;

    if (msg == NULL)
        return 1;
    memset(msg, 'x', size);
    tg__cstream_open(&s, ch, "/bench.Floor/Stream", 60000);
    snprintf(head, sizeof(head), "%zu", mb);
    tg__cstream_send(s, (const uint8_t *)head, strlen(head) + 1, 10000);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (size_t i = 0; i < mb; i++)
        if (tg__cstream_send(s, msg, size, 10000) != TG_OK) {
            fprintf(stderr, "rpc_floor: %s\n", tg_error_last());
            return 1;
        }
    if (tg__cstream_recv(s, &ack, &alen, 60000) != TG_OK || ack == NULL) {
        fprintf(stderr, "rpc_floor: no ack\n");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    free(ack);
    free(msg);
    secs = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    printf("case=floor_bulk mb=%zu run=%d seconds=%.4f gbps=%.3f\n", mb, run,
           secs, (double)mb * size / secs / 1e9);
    tg__cstream_close_send(s, 1000);
    tg__cstream_free(s);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n_unary = 1000, n_stream = 100000, bulk_mb = 0;
    int repeat = 3, fds[2], port = 0;
    pid_t pid;
    char addr[64];
    tg__chan *ch;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--n-unary") == 0)
            n_unary = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--n-stream") == 0)
            n_stream = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--bulk-mb") == 0)
            bulk_mb = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--repeat") == 0)
            repeat = atoi(argv[i + 1]);
    }
    if (pipe(fds) != 0)
        return 1;
    pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(fds[0]);
        signal(SIGTERM, SIG_DFL);
        _exit(serve(fds[1]));
    }
    close(fds[1]);
    if (read(fds[0], &port, sizeof(port)) != sizeof(port)) {
        fprintf(stderr, "rpc_floor: server did not start\n");
        return 1;
    }
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", port);
    tg__rpc_init();
    if (tg__chan_open(&ch, addr, NULL, 0) != TG_OK)
        return 1;
    for (int r = 1; r <= repeat; r++) {
        double *lat = calloc(n_unary, sizeof(double));
        uint8_t req[16] = "ping";
        for (size_t i = 0; i < n_unary; i++) {
            uint8_t *resp;
            size_t rlen;
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            if (tg__chan_unary(ch, "/bench.Floor/Echo", req, 4, &resp, &rlen,
                               10000) != TG_OK) {
                fprintf(stderr, "rpc_floor: %s\n", tg_error_last());
                return 1;
            }
            clock_gettime(CLOCK_MONOTONIC, &b);
            free(resp);
            lat[i] =
                (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
        }
        qsort(lat, n_unary, sizeof(double), cmp);
        printf("case=floor_unary n=%zu run=%d p50_us=%.1f p99_us=%.1f\n",
               n_unary, r, lat[n_unary / 2], lat[(n_unary * 99) / 100]);
        free(lat);
    }
    for (int r = 1; r <= repeat; r++) {
        tg__cstream *s;
        char head[32];
        uint8_t msg[32], *ack;
        size_t alen;
        struct timespec a, b;
        double secs;

        memset(msg, 'x', sizeof(msg));
        tg__cstream_open(&s, ch, "/bench.Floor/Stream", 60000);
        snprintf(head, sizeof(head), "%zu", n_stream);
        tg__cstream_send(s, (const uint8_t *)head, strlen(head) + 1, 10000);
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (size_t i = 0; i < n_stream; i++)
            if (tg__cstream_send(s, msg, sizeof(msg), 10000) != TG_OK) {
                fprintf(stderr, "rpc_floor: %s\n", tg_error_last());
                return 1;
            }
        if (tg__cstream_recv(s, &ack, &alen, 30000) != TG_OK || ack == NULL) {
            fprintf(stderr, "rpc_floor: no ack\n");
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        free(ack);
        secs = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
        printf("case=floor_stream n=%zu run=%d seconds=%.6f rate=%.1f\n",
               n_stream, r, secs, n_stream / secs);
        tg__cstream_close_send(s, 1000);
        tg__cstream_free(s);
        fflush(stdout);
    }
    for (int r = 1; bulk_mb > 0 && r <= repeat; r++)
        if (bulk(ch, bulk_mb, r) != 0)
            return 1;
    tg__chan_close(ch);
    tg__rpc_shutdown();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}
