/* SPDX-License-Identifier: Apache-2.0
 *
 * auth.h: who may call what on a TLS scheduler. The one table of the
 * scheduler's access policy: a peer's role comes from its certificate
 * (URI SAN "taskgrid:role=NAME", else the subject OU; read by the rpc
 * layer), each method lists the roles it admits, and a refusal is
 * PERMISSION_DENIED with a message naming the role needed. A plaintext
 * scheduler checks nothing (anyone who can reach it may do anything).
 * Pure C, no gRPC, so the policy is unit-tested directly.
 */
#ifndef TGS_AUTH_H
#define TGS_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* Roles as bits, so a method's admitted roles are one mask. */
enum {
    TGS_ROLE_SCHEDULER = 1u << 0,
    TGS_ROLE_WORKER = 1u << 1,
    TGS_ROLE_CLIENT = 1u << 2,
    TGS_ROLE_ADMIN = 1u << 3,
    /* Any certificate signed by the cluster CA, with or without a role. */
    TGS_ROLE_ANY = 1u << 8,
};

/** The bit of a role name ("worker" -> TGS_ROLE_WORKER); 0 if unknown. */
unsigned tgs_auth_role_bit(const char *role);

/**
 * The roles admitted to `method` ("/taskgrid.v1.Scheduler/Submit"); 0
 * (nobody) for a method the table does not list.
 */
unsigned tgs_auth_method_roles(const char *method);

/**
 * True if a peer whose certificate carries `role` ("" for none) may call
 * a method admitting `roles`.
 */
bool tgs_auth_allows(unsigned roles, const char *role);

/**
 * The refusal message: "method WorkerLink/Connect needs role 'worker'
 * (this certificate has role 'client')". Written to `buf`.
 */
void tgs_auth_refusal(const char *method, unsigned roles, const char *role,
                      char *buf, size_t len);

#endif
