/* SPDX-License-Identifier: Apache-2.0
 *
 * dataservice.h: the worker's DataService (proto/taskgrid/v1): a gRPC
 * server on its own thread that streams held results (store.h) to other
 * workers with Fetch, in chunks of at most 1 MiB, each with its CRC-32.
 * Over TLS it serves with the worker's own certificate, requires a
 * client certificate from the cluster CA and answers only certificates
 * of role "worker", and of role "client" when the operator allows clients
 * to fetch directly (opts.clients); PERMISSION_DENIED otherwise, naming
 * the role seen. The same server answers grpc.health.v1 Check (SERVING
 * for "" and "taskgrid.v1.DataService") and server reflection
 * (grpc.reflection.v1 and v1alpha), to any peer the TLS handshake
 * admitted.
 * Depends on the server side of the transport (transport/server.h), the
 * codec (proto/wire.h), zlib, the store and the counters.
 */
#ifndef TGW_DATASERVICE_H
#define TGW_DATASERVICE_H

#include "counters.h"
#include "store.h"
#include "transport/transport.h"

typedef struct tgw_dataservice tgw_dataservice;

typedef struct tgw_dataservice_opts {
    const char *listen;     /* "HOST:PORT"; port 0 picks one */
    const tg__rpc_sec *sec; /* NULL: plaintext; else mutual TLS */
    tgw_store *store;       /* borrowed; must outlive the service */
    tgw_counters *counters; /* borrowed; must outlive the service */
    const char *name;       /* this worker's name, for messages (copied) */
    bool clients; /* over TLS, answer role "client" too (--data-clients) */
} tgw_dataservice_opts;

/**
 * Bind and start serving on a thread of its own.
 *
 * @return TG_OK; TG_EIO when the address cannot be bound (in use),
 *         TG_EINVAL, TG_ETLS, TG_ENOMEM; message in tg_error_last().
 *         Stop and free with tgw_dataservice_stop.
 */
int tgw_dataservice_start(tgw_dataservice **out,
                          const tgw_dataservice_opts *opts);

/** The bound TCP port. */
int tgw_dataservice_port(const tgw_dataservice *d);

/** The worker name NOT_FOUND messages give (copied; the scheduler may
 * register the worker under another name than it asked for). */
void tgw_dataservice_set_name(tgw_dataservice *d, const char *name);

/** Warn when the worker certificate of `sec` (NULL: plaintext, nothing to
 * check; `cert_path` names it in the message) cannot serve peers: they
 * verify it for the name TG_PROTO_WORKER_TLS_NAME. */
void tgw_dataservice_check_cert(const tg__rpc_sec *sec, const char *cert_path);

/** Cancel every Fetch in progress, stop the thread and free. NULL is a
 * no-op. */
void tgw_dataservice_stop(tgw_dataservice *d);

#endif
