/* SPDX-License-Identifier: Apache-2.0
 *
 * task_client.c: the worker-side client of nested work (see
 * taskgrid/nested.h): one tg_client per worker process, opened on first
 * use with the worker's identity (util/tls.h) and shared by its tasks;
 * the parent key of nested submissions and the secede/rejoin around
 * waits, both from the task the calling thread runs (util/nest.h).
 * Depends on client.c and the worker's marks in util/nest.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "client_impl.h"
#include "taskgrid/nested.h"
#include "util/error.h"
#include "util/log.h"
#include "util/nest.h"
#include "util/tls.h"

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static tg_client *shared_client;

/* The worker stops: release what the tasks still hold and close. */
static void shared_close(void)
{
    tg_client *c;

    pthread_mutex_lock(&shared_mu);
    c = shared_client;
    shared_client = NULL;
    pthread_mutex_unlock(&shared_mu);
    if (c != NULL) {
        c->task_client = false;
        tg_client_free(c);
    }
}

/* Connect the worker-wide client; called with shared_mu held. */
static int shared_open(const char *address, const tg_security *sec)
{
    tg_client_opts o = TG_CLIENT_OPTS_INIT;
    char id[96];
    tg_client *c;
    int rc;

    snprintf(id, sizeof(id), "worker-client-%ld", (long)getpid());
    o.client_id = id;
    o.security = sec->ca_pem != NULL ? sec : NULL;
    rc = tg_client_connect(&c, address, &o);
    if (rc != TG_OK)
        return rc;
    c->task_client = true;
    shared_client = c;
    tg__nest_on_exit(shared_close);
    return TG_OK;
}

int tg_task_client(tg_task_ctx *t, tg_client **out)
{
    tg_security sec;
    const char *address;
    int rc = TG_OK;

    if (out == NULL)
        return tg__error_set(TG_EINVAL, "tg_task_client: out is NULL");
    *out = NULL;
    address = tg__tls_worker_identity(&sec);
    if (t == NULL || address == NULL || tg__nest_current(NULL) != t)
        return tg__error_set(
            TG_ESTATE, "tg_task_client: not inside a task running on a worker");
    pthread_mutex_lock(&shared_mu);
    if (shared_client == NULL)
        rc = shared_open(address, &sec);
    *out = shared_client;
    pthread_mutex_unlock(&shared_mu);
    return rc;
}

const char *tg__task_client_parent(const tg_client *c)
{
    const tg__nest_ops *ops;
    struct tg_task_ctx *t;

    if (!c->task_client || (t = tg__nest_current(&ops)) == NULL || ops == NULL)
        return NULL;
    return ops->key(t);
}

bool tg__task_client_secede(const tg_client *c)
{
    const tg__nest_ops *ops;
    struct tg_task_ctx *t;

    if (!c->task_client || (t = tg__nest_current(&ops)) == NULL || ops == NULL)
        return false;
    if (ops->secede(t) != TG_OK) {
        /* Already seceded (a wait inside a wait) or no thread for the
         * slot: wait holding it, as a plain client would. */
        TG_LOG_DEBUG("task '%s' waits without seceding: %s", ops->key(t),
                     tg_error_last());
        return false;
    }
    return true;
}

void tg__task_client_rejoin(const tg_client *c, bool seceded)
{
    const tg__nest_ops *ops;
    struct tg_task_ctx *t;

    (void)c;
    if (!seceded || (t = tg__nest_current(&ops)) == NULL || ops == NULL)
        return;
    if (ops->rejoin(t) != TG_OK)
        TG_LOG_WARN("task '%s' could not rejoin: %s", ops->key(t),
                    tg_error_last());
}
