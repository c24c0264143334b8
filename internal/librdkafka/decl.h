/*
 * The part of librdkafka's API (rdkafka.h) this package calls, declared here because the header ships inside
 * confluent-kafka-go's module, not on the include path. The symbols resolve at the final link against the archive
 * confluent-kafka-go bundles (glibc or musl). TestDeclarationsMatchTheBundledHeader compiles this file together
 * with the bundled rdkafka.h: a prototype that differs is a compile error there, and every mirrored struct and
 * constant is checked against the real one.
 *
 * Enum-typed parameters are declared with the integer type GCC gives the enum (int when it has negative values,
 * unsigned int otherwise), which is what keeps the prototypes compatible with the real ones.
 */
#ifndef EOS_DECL_H
#define EOS_DECL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_topic_conf_s rd_kafka_topic_conf_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_message_s rd_kafka_message_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;
typedef struct rd_kafka_error_s rd_kafka_error_t;
typedef struct rd_kafka_topic_partition_s rd_kafka_topic_partition_t;
typedef struct rd_kafka_topic_partition_list_s rd_kafka_topic_partition_list_t;
typedef struct rd_kafka_consumer_group_metadata_s rd_kafka_consumer_group_metadata_t;

/* mirror: rd_kafka_message_t */
struct eos_rd_message {
        int err;
        rd_kafka_topic_t *rkt;
        int32_t partition;
        void *payload;
        size_t len;
        void *key;
        size_t key_len;
        int64_t offset;
        void *_private;
};

/* mirror: rd_kafka_topic_partition_t */
struct eos_rd_topic_partition {
        char *topic;
        int32_t partition;
        int64_t offset;
        void *metadata;
        size_t metadata_size;
        void *opaque;
        int err;
        void *_private;
};

/* mirror: rd_kafka_topic_partition_list_t */
struct eos_rd_topic_partition_list {
        int cnt;
        int size;
        struct eos_rd_topic_partition *elems;
};

#define EOS_RD_CONSUMER 1                    /* = RD_KAFKA_CONSUMER */
#define EOS_RD_PRODUCER 0                    /* = RD_KAFKA_PRODUCER */
#define EOS_RD_CONF_OK 0                     /* = RD_KAFKA_CONF_OK */
#define EOS_RD_ERR_NO_ERROR 0                /* = RD_KAFKA_RESP_ERR_NO_ERROR */
#define EOS_RD_ERR_ASSIGN_PARTITIONS (-175)  /* = RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS */
#define EOS_RD_ERR_REVOKE_PARTITIONS (-174)  /* = RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS */
#define EOS_RD_ERR_FATAL (-150)              /* = RD_KAFKA_RESP_ERR__FATAL */
#define EOS_RD_ERR_QUEUE_FULL (-184)         /* = RD_KAFKA_RESP_ERR__QUEUE_FULL */
#define EOS_RD_MSG_F_COPY 0x2                /* = RD_KAFKA_MSG_F_COPY */
#define EOS_RD_PARTITION_UA (-1)             /* = RD_KAFKA_PARTITION_UA */
#define EOS_RD_OFFSET_INVALID (-1001)        /* = RD_KAFKA_OFFSET_INVALID */
#define EOS_RD_VTYPE_END 0                   /* = RD_KAFKA_VTYPE_END */
#define EOS_RD_VTYPE_RKT 2                   /* = RD_KAFKA_VTYPE_RKT */
#define EOS_RD_VTYPE_PARTITION 3             /* = RD_KAFKA_VTYPE_PARTITION */
#define EOS_RD_VTYPE_VALUE 4                 /* = RD_KAFKA_VTYPE_VALUE */
#define EOS_RD_VTYPE_KEY 5                   /* = RD_KAFKA_VTYPE_KEY */
#define EOS_RD_VTYPE_OPAQUE 6                /* = RD_KAFKA_VTYPE_OPAQUE */
#define EOS_RD_VTYPE_MSGFLAGS 7              /* = RD_KAFKA_VTYPE_MSGFLAGS */
#define EOS_RD_VTYPE_TIMESTAMP 8             /* = RD_KAFKA_VTYPE_TIMESTAMP */
#define EOS_RD_VTYPE_HEADERS 10              /* = RD_KAFKA_VTYPE_HEADERS */
/* Not in rdkafka.h: what librdkafka's request writer reserves per record (MsgVersion 2) and per header on top of
 * their bytes, RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD (src/rdkafka_proto.h) and the two varint lengths of a header. */
#define EOS_RD_MESSAGE_V2_MAX_OVERHEAD 36
#define EOS_RD_HEADER_MAX_OVERHEAD 10

int rd_kafka_version(void);
const char *rd_kafka_version_str(void);
const char *rd_kafka_err2str(int err);
const char *rd_kafka_err2name(int err);

rd_kafka_conf_t *rd_kafka_conf_new(void);
void rd_kafka_conf_destroy(rd_kafka_conf_t *conf);
int rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr, size_t errstr_size);
void rd_kafka_conf_set_opaque(rd_kafka_conf_t *conf, void *opaque);
void rd_kafka_conf_properties_show(FILE *fp);
void rd_kafka_conf_set_rebalance_cb(rd_kafka_conf_t *conf,
                                    void (*rebalance_cb)(rd_kafka_t *rk, int err,
                                                         rd_kafka_topic_partition_list_t *partitions, void *opaque));
void rd_kafka_conf_set_error_cb(rd_kafka_conf_t *conf,
                                void (*error_cb)(rd_kafka_t *rk, int err, const char *reason, void *opaque));
void rd_kafka_conf_set_log_cb(rd_kafka_conf_t *conf,
                              void (*log_cb)(const rd_kafka_t *rk, int level, const char *fac, const char *buf));
void rd_kafka_conf_set_stats_cb(rd_kafka_conf_t *conf,
                                int (*stats_cb)(rd_kafka_t *rk, char *json, size_t json_len, void *opaque));
void rd_kafka_conf_set_dr_msg_cb(rd_kafka_conf_t *conf,
                                 void (*dr_msg_cb)(rd_kafka_t *rk, const rd_kafka_message_t *rkmessage, void *opaque));

rd_kafka_t *rd_kafka_new(unsigned int type, rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);
void rd_kafka_destroy(rd_kafka_t *rk);
void *rd_kafka_opaque(const rd_kafka_t *rk);
int rd_kafka_fatal_error(rd_kafka_t *rk, char *errstr, size_t errstr_size);
int rd_kafka_poll(rd_kafka_t *rk, int timeout_ms);
int rd_kafka_flush(rd_kafka_t *rk, int timeout_ms);
int rd_kafka_outq_len(rd_kafka_t *rk);

rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_new(int size);
void rd_kafka_topic_partition_list_destroy(rd_kafka_topic_partition_list_t *rkparlist);
rd_kafka_topic_partition_t *rd_kafka_topic_partition_list_add(rd_kafka_topic_partition_list_t *rktparlist,
                                                              const char *topic, int32_t partition);

int rd_kafka_subscribe(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *topics);
int rd_kafka_poll_set_consumer(rd_kafka_t *rk);
rd_kafka_queue_t *rd_kafka_queue_get_consumer(rd_kafka_t *rk);
void rd_kafka_queue_destroy(rd_kafka_queue_t *rkqu);
ssize_t rd_kafka_consume_batch_queue(rd_kafka_queue_t *rkqu, int timeout_ms, rd_kafka_message_t **rkmessages,
                                     size_t rkmessages_size);
void rd_kafka_message_destroy(rd_kafka_message_t *rkmessage);
int64_t rd_kafka_message_timestamp(const rd_kafka_message_t *rkmessage, unsigned int *tstype);
int rd_kafka_message_headers(const rd_kafka_message_t *rkmessage, rd_kafka_headers_t **hdrsp);
size_t rd_kafka_header_cnt(const rd_kafka_headers_t *hdrs);
int rd_kafka_header_get_all(const rd_kafka_headers_t *hdrs, size_t idx, const char **namep, const void **valuep,
                            size_t *sizep);
const char *rd_kafka_topic_name(const rd_kafka_topic_t *rkt);

rd_kafka_error_t *rd_kafka_incremental_assign(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *partitions);
rd_kafka_error_t *rd_kafka_incremental_unassign(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *partitions);
int rd_kafka_assignment_lost(rd_kafka_t *rk);
int rd_kafka_pause_partitions(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions);
int rd_kafka_resume_partitions(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions);
int rd_kafka_committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions, int timeout_ms);
int rd_kafka_position(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions);
rd_kafka_error_t *rd_kafka_seek_partitions(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions,
                                           int timeout_ms);
int rd_kafka_get_watermark_offsets(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t *low,
                                   int64_t *high);
int rd_kafka_query_watermark_offsets(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t *low,
                                     int64_t *high, int timeout_ms);
int rd_kafka_commit(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *offsets, int async);
int rd_kafka_consumer_close(rd_kafka_t *rk);
rd_kafka_consumer_group_metadata_t *rd_kafka_consumer_group_metadata(rd_kafka_t *rk);
void rd_kafka_consumer_group_metadata_destroy(rd_kafka_consumer_group_metadata_t *);
const char *rd_kafka_consumer_group_metadata_member_id(const rd_kafka_consumer_group_metadata_t *group_metadata);
int32_t rd_kafka_consumer_group_metadata_generation_id(const rd_kafka_consumer_group_metadata_t *group_metadata);

rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic, rd_kafka_topic_conf_t *conf);
void *rd_kafka_topic_opaque(const rd_kafka_topic_t *rkt);
rd_kafka_topic_conf_t *rd_kafka_default_topic_conf_dup(rd_kafka_t *rk);
void rd_kafka_topic_conf_set_opaque(rd_kafka_topic_conf_t *conf, void *rkt_opaque);
void rd_kafka_topic_conf_set_partitioner_cb(rd_kafka_topic_conf_t *topic_conf,
                                            int32_t (*partitioner)(const rd_kafka_topic_t *rkt, const void *keydata,
                                                                   size_t keylen, int32_t partition_cnt,
                                                                   void *rkt_opaque, void *msg_opaque));
int rd_kafka_topic_partition_available(const rd_kafka_topic_t *rkt, int32_t partition);
int32_t rd_kafka_msg_partitioner_consistent_random(const rd_kafka_topic_t *rkt, const void *key, size_t keylen,
                                                   int32_t partition_cnt, void *rkt_opaque, void *msg_opaque);
void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt);
int rd_kafka_producev(rd_kafka_t *rk, ...);
rd_kafka_headers_t *rd_kafka_headers_new(size_t initial_count);
void rd_kafka_headers_destroy(rd_kafka_headers_t *hdrs);
int rd_kafka_header_add(rd_kafka_headers_t *hdrs, const char *name, ssize_t name_size, const void *value,
                        ssize_t value_size);

rd_kafka_error_t *rd_kafka_init_transactions(rd_kafka_t *rk, int timeout_ms);
rd_kafka_error_t *rd_kafka_begin_transaction(rd_kafka_t *rk);
rd_kafka_error_t *rd_kafka_send_offsets_to_transaction(rd_kafka_t *rk,
                                                       const rd_kafka_topic_partition_list_t *offsets,
                                                       const rd_kafka_consumer_group_metadata_t *cgmetadata,
                                                       int timeout_ms);
rd_kafka_error_t *rd_kafka_commit_transaction(rd_kafka_t *rk, int timeout_ms);
rd_kafka_error_t *rd_kafka_abort_transaction(rd_kafka_t *rk, int timeout_ms);

int rd_kafka_error_code(const rd_kafka_error_t *error);
const char *rd_kafka_error_string(const rd_kafka_error_t *error);
int rd_kafka_error_is_fatal(const rd_kafka_error_t *error);
int rd_kafka_error_is_retriable(const rd_kafka_error_t *error);
int rd_kafka_error_txn_requires_abort(const rd_kafka_error_t *error);
void rd_kafka_error_destroy(rd_kafka_error_t *error);

#endif
