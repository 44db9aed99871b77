/* SPDX-License-Identifier: Apache-2.0
 *
 * role.h (internal): the one place that decides which taskgrid role a
 * certificate carries. The scheduler (through tg__scall_role, for the
 * access policy) and the worker (its own certificate at start) both call
 * it, so they cannot disagree. Depends on OpenSSL (libcrypto) only; no
 * gRPC: the transport hands over the peer's PEM as gRPC received it.
 *
 * The rules, in order:
 *
 *  1. A role is read only from X.509 structure, never from text: a URI
 *     subject alternative name "taskgrid:role=NAME", or the subject's OU
 *     attribute (NID_organizationalUnitName). Role-looking text anywhere
 *     else is ignored: in the CN (",OU=admin", " OU=worker", escapes, a
 *     literal "+"), in DNS, e-mail or IP SANs, in other attributes.
 *  2. The URI SAN wins when both are present, even if the OU names
 *     another role (the URI is the field taskgrid-certs writes first; the
 *     OU is for tools that only show the subject and for other PKIs).
 *  3. Ambiguity is refused, not resolved: two or more role URIs, or (with
 *     no role URI) two or more OUs, give no role at all, as does a role
 *     URI or OU whose value is not 1 to 32 of [a-z0-9_-] (a bad role URI
 *     does not fall back to the OU). The reason is returned for the log.
 *  4. An OU inside a multi-valued RDN ("CN=x+OU=worker" as two
 *     attributes) is a real OU attribute the CA signed, and counts.
 *
 * The caller has verified the certificate chain (the transport's
 * verifier did, in the handshake: util/verify.h); this function only
 * reads the leaf.
 */
#ifndef TG_SRC_ROLE_H
#define TG_SRC_ROLE_H

#include <stddef.h>

/* A role name is at most this long (as tg__certs_issue allows). */
#define TG__ROLE_MAX 32

/**
 * The role of the first certificate in `pem` (`pem_len` bytes, need not
 * be NUL-terminated).
 *
 * @param role   receives the role, or "" for none; at least
 *               TG__ROLE_MAX + 1 bytes are needed for every role to fit
 *               (a role that does not fit is refused)
 * @param why    receives, when the result is "", the reason in one
 *               sentence ("two URI SANs taskgrid:role=..."); may be NULL
 * @return TG_OK with a role or with "" when the certificate carries no
 *         role at all; TG_EPERM when a role was refused (rule 3);
 *         TG_ETLS when `pem` holds no parsable certificate. `role` is ""
 *         for every code but TG_OK. Does not set tg_error_last().
 */
int tg__role_from_pem(const char *pem, size_t pem_len, char *role,
                      size_t role_len, char *why, size_t why_len);

#endif
