/* SPDX-License-Identifier: Apache-2.0
 *
 * taskgrid/taskgrid.h: the umbrella header of libtaskgrid, the C SDK of
 * taskgrid. Include it to get the whole public API: status codes
 * (status.h), TLS options (security.h), the client and its futures
 * (client.h), map and tree reduction over partitions (collections.h), the
 * worker-side client of nested work (nested.h), the
 * temporary local cluster (cluster.h) and the worker
 * plug-in ABI (plugin.h; its functions are provided by taskgrid-worker,
 * not by libtaskgrid).
 *
 *     tg_cluster *cl;  tg_client *c;
 *     tg_cluster_start(&cl, NULL);
 *     tg_client_connect(&c, tg_cluster_address(cl), NULL);
 *     ... tg_client_submit(), tg_client_gather(), tg_future_result() ...
 *     tg_client_free(c);  tg_cluster_free(cl);
 */
#ifndef TASKGRID_TASKGRID_H
#define TASKGRID_TASKGRID_H

#include "taskgrid/client.h"
#include "taskgrid/cluster.h"
#include "taskgrid/collections.h"
#include "taskgrid/nested.h"
#include "taskgrid/plugin.h"
#include "taskgrid/security.h"
#include "taskgrid/status.h"
#include "taskgrid/watch.h"

#endif
