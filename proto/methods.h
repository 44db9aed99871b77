/* SPDX-License-Identifier: Apache-2.0
 *
 * methods.h: the gRPC method paths of the contract
 * (proto/taskgrid/v1/taskgrid.proto, grpc.health.v1 and server reflection,
 * grpc.reflection.v1 and v1alpha), written out once
 * for the SDK, the scheduler (its server table and access policy) and the
 * worker. A path is "/" package "." service "/" method.
 */
#ifndef TG_PROTO_METHODS_H
#define TG_PROTO_METHODS_H

#define TG_METHOD_SUBMIT "/taskgrid.v1.Scheduler/Submit"
#define TG_METHOD_GATHER "/taskgrid.v1.Scheduler/Gather"
#define TG_METHOD_SCALE "/taskgrid.v1.Scheduler/Scale"
#define TG_METHOD_ANNOTATE "/taskgrid.v1.Scheduler/Annotate"
#define TG_METHOD_CANCEL "/taskgrid.v1.Scheduler/Cancel"
#define TG_METHOD_RELEASE "/taskgrid.v1.Scheduler/Release"
#define TG_METHOD_STATUS "/taskgrid.v1.Scheduler/Status"
#define TG_METHOD_REPLICATE "/taskgrid.v1.Scheduler/Replicate"

#define TG_METHOD_WATCH "/taskgrid.v1.Scheduler/Watch"
#define TG_METHOD_SET_LOG_LEVEL "/taskgrid.v1.Scheduler/SetLogLevel"
#define TG_METHOD_COORDINATE "/taskgrid.v1.Scheduler/Coordinate"
#define TG_METHOD_RETIRE "/taskgrid.v1.Scheduler/Retire"
#define TG_METHOD_CONNECT "/taskgrid.v1.WorkerLink/Connect"
#define TG_METHOD_FETCH "/taskgrid.v1.DataService/Fetch"
#define TG_METHOD_HEALTH_CHECK "/grpc.health.v1.Health/Check"
#define TG_METHOD_HEALTH_WATCH "/grpc.health.v1.Health/Watch"
/* Server reflection: one bidirectional stream, under two package names
 * (grpcurl and grpc-go try v1 first, then v1alpha). */
#define TG_METHOD_REFLECTION \
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
#define TG_METHOD_REFLECTION_V1ALPHA \
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"

/* Longest task key, in bytes (TaskSpec.key in the proto; the SDK's
 * TG_KEY_MAX is the same number). */
#define TG_PROTO_KEY_MAX 1024

/* The TLS name a worker verifies when it fetches from another worker's
 * DataService (gRPC's target name override): the holder's certificate must
 * chain to the cluster CA and name it; taskgrid-certs writes it into every
 * worker certificate. */
#define TG_PROTO_WORKER_TLS_NAME "taskgrid-worker"

/* Largest DataChunk.data, in bytes. */
#define TG_PROTO_CHUNK_MAX (1u << 20)
/* Default inline limit (SchedulerMessage.inline_limit), in bytes. */
#define TG_PROTO_INLINE_LIMIT_DEFAULT (64u << 10)

#endif
