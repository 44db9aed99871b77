/* SPDX-License-Identifier: Apache-2.0
 *
 * assets.h (private to taskgrid-scheduler): the dashboard's static files,
 * embedded into the program at build time (the genrule "dashboard_assets"
 * in scheduler/BUILD writes assets.c from scheduler/web/ and the vendored
 * Chart.js in third_party/chartjs/), so an installed scheduler needs no
 * data directory.
 */
#ifndef TGS_ASSETS_H
#define TGS_ASSETS_H

#include <stddef.h>

typedef struct tgs_asset {
    const char *path; /* "/dashboard.js" */
    const char *type; /* Content-Type */
    const unsigned char *bytes;
    size_t len;
} tgs_asset;

/* The embedded files, "/" (the page) first. */
extern const tgs_asset tgs_assets[];
extern const size_t tgs_nassets;

#endif
