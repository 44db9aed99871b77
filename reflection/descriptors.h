/* SPDX-License-Identifier: Apache-2.0
 *
 * descriptors.h (private to reflection/): the protocol's descriptors,
 * built into the program: a FileDescriptorSet (protoc
 * --descriptor_set_out --include_source_info, so reflection clients also
 * show the .proto comments) of taskgrid/v1/taskgrid.proto,
 * grpc/health/v1/health.proto, grpc/reflection/v1/reflection.proto and
 * grpc/reflection/v1alpha/reflection.proto. descriptors.c is generated
 * (reflection/BUILD).
 */
#ifndef TGR_DESCRIPTORS_H
#define TGR_DESCRIPTORS_H

#include <stddef.h>

extern const unsigned char tg__refl_descriptor_set[];
extern const size_t tg__refl_descriptor_set_len;

#endif
