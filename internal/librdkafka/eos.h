/* The C half of package librdkafka: the loops that run once per batch instead of once per record. */
#ifndef EOS_H
#define EOS_H

#include <pthread.h>
#include "decl.h"

/* The opaque of every client this package creates. */
struct eos_client {
        uintptr_t handle; /* the Go client's cgo.Handle */

        /* Producer delivery accounting, written by the delivery report callback (librdkafka's poll, no Go). */
        pthread_mutex_t mu;
        uint64_t epoch;     /* the transaction whose failures count; each record carries its epoch */
        int64_t pending;    /* produced, not yet reported; atomic */
        int dr_err;         /* first failed delivery of the current epoch, 0 when none */
        int32_t dr_partition;
        char dr_topic[256];

        /* A producer whose queue was full waits on room for pending to fall below wake_below (0: nobody waits);
         * the delivery report callback signals it, taking mu only then. */
        pthread_cond_t room;
        int64_t wake_below; /* atomic */
};

/* One consumed record, pointing into its librdkafka message: valid until eos_consume_release. */
struct eos_rec {
        const char *topic;
        const void *key;
        const void *value; /* for an error: librdkafka's error string */
        int64_t topic_len;
        int64_t key_len;   /* -1: null key */
        int64_t value_len; /* -1: null value */
        int64_t offset;
        int64_t timestamp; /* milliseconds since the epoch, -1 when none */
        int32_t partition;
        int32_t err;
        int32_t hdr_first;
        int32_t hdr_count;
};

struct eos_hdr {
        const char *name;
        const void *value;
        int64_t name_len;
        int64_t value_len; /* -1: null value */
};

/* A batch consumed and not yet released; all of it in C memory, grown as needed. */
struct eos_batch {
        rd_kafka_message_t **msgs;
        struct eos_rec *recs;
        size_t cap;
        size_t n;
        struct eos_hdr *hdrs;
        size_t hdr_cap;
        size_t nhdrs;
};

/* Where one topic's keyless records go: runs of about one produce request each, on its partitions in turn. The
 * idempotent producer has one produce request in flight per partition, so a partition that gets a whole batch
 * (librdkafka's sticky partitioner, 10 ms per partition) sends it one round trip at a time, while runs of one
 * request keep every partition's request in flight and each request full. The opaque of the topic's handle:
 * eos_produce (one thread) sizes the runs, the partitioner (any thread) only reads which run it is. */
struct eos_placement {
        int64_t run;       /* the current run's number; atomic */
        int64_t run_bytes; /* what the current run holds, in librdkafka's worst-case wire size */
        int64_t run_msgs;
        int64_t max_bytes; /* a run ends before it would exceed one request: batch.size, batch.num.messages */
        int64_t max_msgs;
        int32_t first; /* the first run's partition, random so that replicas do not all start on one */
};

/* One record to produce. Key, value and header bytes are offsets into one byte arena. */
struct eos_out {
        rd_kafka_topic_t *rkt;
        struct eos_placement *placement; /* NULL: librdkafka's partitioner places keyless records */
        int64_t key_off, key_len;     /* key_len -1: null key */
        int64_t value_off, value_len; /* value_len -1: null value */
        int64_t timestamp;            /* 0: now */
        int32_t partition;
        int32_t hdr_first, hdr_count;
};

struct eos_out_hdr {
        int64_t name_off, name_len;
        int64_t value_off, value_len; /* -1: null value */
};

struct eos_client *eos_client_new(uintptr_t handle);
void eos_client_free(struct eos_client *cl);
rd_kafka_t *eos_new(unsigned int type, const char **names, const char **values, int n, struct eos_client *cl,
                    char *errstr, size_t errstr_size);
ssize_t eos_consume(rd_kafka_queue_t *q, int timeout_ms, struct eos_batch *b, size_t max);
void eos_consume_release(struct eos_batch *b);
void eos_batch_free(struct eos_batch *b);
rd_kafka_topic_t *eos_topic_new(rd_kafka_t *rk, const char *topic, struct eos_placement *placement);
int eos_produce(rd_kafka_t *rk, struct eos_client *cl, const struct eos_out *outs, size_t n,
                const struct eos_out_hdr *hdrs, const char *arena, size_t *done);
void eos_begin_epoch(struct eos_client *cl, uint64_t epoch);
int64_t eos_pending(struct eos_client *cl);
int eos_wait_room(struct eos_client *cl, int timeout_ms);
int eos_delivery_error(struct eos_client *cl, char *topic, size_t topic_size, int32_t *partition);
void eos_list_add(rd_kafka_topic_partition_list_t *list, const char *topic, int32_t partition, int64_t offset);
struct eos_rd_topic_partition *eos_list_elems(rd_kafka_topic_partition_list_t *list, int *cnt);

#endif
