/* SPDX-License-Identifier: Apache-2.0
 *
 * taskgrid/export.h: TG_EXPORT marks the public API. libtaskgrid (and the
 * worker, for its plug-in ABI) are compiled with -fvisibility=hidden, so
 * only declarations carrying TG_EXPORT are exported from the shared
 * library; the project's internals (tg__*, tgs_*, tgw_*) stay inside.
 */
#ifndef TASKGRID_EXPORT_H
#define TASKGRID_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define TG_EXPORT __attribute__((visibility("default")))
#else
#define TG_EXPORT
#endif

#endif
