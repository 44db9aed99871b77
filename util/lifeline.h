/* SPDX-License-Identifier: Apache-2.0
 *
 * lifeline.h (internal): --exit-with-parent-fd of the scheduler and the
 * worker. A detached thread reads a descriptor until end of file (the
 * process holding its other end exited or closed it: a parent's pipe, the
 * ssh channel of a worker started over ssh), then stops this process
 * exactly as SIGTERM does, by sending it SIGTERM. POSIX threads.
 */
#ifndef TG_UTIL_LIFELINE_H
#define TG_UTIL_LIFELINE_H

/**
 * Watch `fd` (open, owned by the thread from now on; bytes read are
 * ignored). Returns 0, or the pthread_create error number (nothing is
 * watched then).
 */
int tg__lifeline_watch(int fd);

#endif
