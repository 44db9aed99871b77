/* SPDX-License-Identifier: Apache-2.0
 *
 * lifeline.c: the --exit-with-parent-fd watcher (see lifeline.h).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#include "lifeline.h"
#include "log.h"

/* Blocks until end of file (or an error) on the descriptor, whichever of
 * the other side's threads held it, then asks this process to stop. */
static void *watch(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[256];
    ssize_t r;

    do
        r = read(fd, buf, sizeof(buf));
    while (r > 0 || (r < 0 && errno == EINTR));
    TG_LOG_INFO("end of file on descriptor %d (--exit-with-parent-fd): the "
                "process holding it is gone; stopping",
                fd);
    kill(getpid(), SIGTERM);
    return NULL;
}

int tg__lifeline_watch(int fd)
{
    pthread_attr_t attr;
    pthread_t t;
    int e;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    e = pthread_create(&t, &attr, watch, (void *)(intptr_t)fd);
    pthread_attr_destroy(&attr);
    return e;
}
