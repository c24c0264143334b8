#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "eos.h"
#include "_cgo_export.h"

static void rebalance_cb(rd_kafka_t *rk, int err, rd_kafka_topic_partition_list_t *parts, void *opaque) {
        struct eos_client *cl = opaque;
        eosRebalance(cl->handle, err, parts);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
        struct eos_client *cl = opaque;
        eosError(cl->handle, err, (char *)reason);
}

/* Called from librdkafka's own threads; the Go side is safe for that. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
        struct eos_client *cl = rd_kafka_opaque(rk);
        if (cl)
                eosLog(cl->handle, level, (char *)fac, (char *)buf);
}

/* Served where the client's events are (the consumer's queue, the producer's poll); 0: librdkafka frees json. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
        struct eos_client *cl = opaque;
        eosStats(cl->handle, json, json_len);
        return 0;
}

/* Counts deliveries and keeps the current epoch's first failure. Pure C: it runs once per record. */
static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        struct eos_client *cl = opaque;
        const struct eos_rd_message *msg = (const struct eos_rd_message *)m;
        if (msg->err) {
                pthread_mutex_lock(&cl->mu);
                if ((uint64_t)(uintptr_t)msg->_private == cl->epoch && cl->dr_err == 0) {
                        const char *topic = rd_kafka_topic_name(msg->rkt);
                        cl->dr_err = msg->err;
                        cl->dr_partition = msg->partition;
                        strncpy(cl->dr_topic, topic ? topic : "", sizeof(cl->dr_topic) - 1);
                        cl->dr_topic[sizeof(cl->dr_topic) - 1] = '\0';
                }
                pthread_mutex_unlock(&cl->mu);
        }
        int64_t left = __atomic_sub_fetch(&cl->pending, 1, __ATOMIC_SEQ_CST);
        int64_t below = __atomic_load_n(&cl->wake_below, __ATOMIC_SEQ_CST);
        if (below > 0 && left < below) {
                pthread_mutex_lock(&cl->mu);
                pthread_cond_broadcast(&cl->room);
                pthread_mutex_unlock(&cl->mu);
        }
}

struct eos_client *eos_client_new(uintptr_t handle) {
        struct eos_client *cl = calloc(1, sizeof(*cl));
        cl->handle = handle;
        pthread_mutex_init(&cl->mu, NULL);
        pthread_cond_init(&cl->room, NULL);
        return cl;
}

void eos_client_free(struct eos_client *cl) {
        pthread_cond_destroy(&cl->room);
        pthread_mutex_destroy(&cl->mu);
        free(cl);
}

rd_kafka_t *eos_new(unsigned int type, const char **names, const char **values, int n, struct eos_client *cl,
                    char *errstr, size_t errstr_size) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        int i;
        rd_kafka_t *rk;
        for (i = 0; i < n; i++) {
                if (rd_kafka_conf_set(conf, names[i], values[i], errstr, errstr_size) != EOS_RD_CONF_OK) {
                        rd_kafka_conf_destroy(conf);
                        return NULL;
                }
        }
        rd_kafka_conf_set_opaque(conf, cl);
        rd_kafka_conf_set_error_cb(conf, error_cb);
        rd_kafka_conf_set_log_cb(conf, log_cb);
        rd_kafka_conf_set_stats_cb(conf, stats_cb);
        if (type == EOS_RD_CONSUMER)
                rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        else
                rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
        rk = rd_kafka_new(type, conf, errstr, errstr_size);
        if (!rk) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        if (type == EOS_RD_CONSUMER)
                rd_kafka_poll_set_consumer(rk);
        return rk;
}

static void batch_grow(struct eos_batch *b, size_t max) {
        if (b->cap >= max)
                return;
        b->msgs = realloc(b->msgs, max * sizeof(*b->msgs));
        b->recs = realloc(b->recs, max * sizeof(*b->recs));
        b->cap = max;
}

static struct eos_hdr *hdr_next(struct eos_batch *b) {
        if (b->nhdrs == b->hdr_cap) {
                b->hdr_cap = b->hdr_cap ? 2 * b->hdr_cap : 1024;
                b->hdrs = realloc(b->hdrs, b->hdr_cap * sizeof(*b->hdrs));
        }
        return &b->hdrs[b->nhdrs++];
}

/* Consumes up to max messages, waiting up to timeout_ms only while none is there (rebalance and error callbacks
 * are served inside it, on this thread), and describes each in b->recs, pointing into the messages, which stay alive until eos_consume_release. */
ssize_t eos_consume(rd_kafka_queue_t *q, int timeout_ms, struct eos_batch *b, size_t max) {
        ssize_t n, i;
        batch_grow(b, max);
        b->nhdrs = 0;
        /* rd_kafka_consume_batch_queue waits until it has max messages or the timeout passed. Waiting for a full
         * array would hold records that are already there, so: take what is queued; if nothing is, wait for
         * one message, then take what came with it. */
        n = rd_kafka_consume_batch_queue(q, 0, b->msgs, max);
        if (n == 0 && timeout_ms != 0) {
                n = rd_kafka_consume_batch_queue(q, timeout_ms, b->msgs, 1);
                if (n == 1 && max > 1) {
                        ssize_t more = rd_kafka_consume_batch_queue(q, 0, b->msgs + 1, max - 1);
                        if (more > 0)
                                n += more;
                }
        }
        if (n < 0)
                return n;
        b->n = (size_t)n;
        for (i = 0; i < n; i++) {
                const struct eos_rd_message *m = (const struct eos_rd_message *)b->msgs[i];
                struct eos_rec *r = &b->recs[i];
                rd_kafka_headers_t *hdrs = NULL;
                const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
                r->topic = topic;
                r->topic_len = (int64_t)strlen(topic);
                r->partition = m->partition;
                r->offset = m->offset;
                r->err = m->err;
                r->key = m->key;
                r->key_len = m->key ? (int64_t)m->key_len : -1;
                r->value = m->payload;
                r->value_len = m->payload ? (int64_t)m->len : -1;
                r->timestamp = -1;
                r->hdr_first = (int32_t)b->nhdrs;
                r->hdr_count = 0;
                if (m->err)
                        continue;
                r->timestamp = rd_kafka_message_timestamp(b->msgs[i], NULL);
                if (rd_kafka_message_headers(b->msgs[i], &hdrs) == EOS_RD_ERR_NO_ERROR) {
                        size_t k, cnt = rd_kafka_header_cnt(hdrs);
                        for (k = 0; k < cnt; k++) {
                                const char *name;
                                const void *value;
                                size_t size;
                                struct eos_hdr *h;
                                if (rd_kafka_header_get_all(hdrs, k, &name, &value, &size) != EOS_RD_ERR_NO_ERROR)
                                        break;
                                h = hdr_next(b);
                                h->name = name;
                                h->name_len = (int64_t)strlen(name);
                                h->value = value;
                                h->value_len = value ? (int64_t)size : -1;
                                r->hdr_count++;
                        }
                }
        }
        return n;
}

void eos_consume_release(struct eos_batch *b) {
        size_t i;
        for (i = 0; i < b->n; i++)
                rd_kafka_message_destroy(b->msgs[i]);
        b->n = 0;
        b->nhdrs = 0;
}

void eos_batch_free(struct eos_batch *b) {
        eos_consume_release(b);
        free(b->msgs);
        free(b->recs);
        free(b->hdrs);
        free(b);
}

/* librdkafka's partitioner for a topic with a placement: keyed records as its default (consistent_random) does,
 * keyless ones (no key or an empty one, which consistent_random places at random) on the current run's
 * partition, or the next one that has a leader. */
static int32_t place(const rd_kafka_topic_t *rkt, const void *key, size_t key_len, int32_t partition_cnt,
                     void *topic_opaque, void *msg_opaque) {
        const struct eos_placement *pl = topic_opaque;
        int32_t i, p;
        if (key && key_len > 0)
                return rd_kafka_msg_partitioner_consistent_random(rkt, key, key_len, partition_cnt, topic_opaque,
                                                                 msg_opaque);
        p = (int32_t)((pl->first + __atomic_load_n(&pl->run, __ATOMIC_RELAXED)) % partition_cnt);
        for (i = 0; i < partition_cnt; i++) {
                int32_t q = (p + i) % partition_cnt;
                if (rd_kafka_topic_partition_available(rkt, q))
                        return q;
        }
        return p; /* no leader known for any: librdkafka holds it on the partition until there is one */
}

/* Creates the topic's handle; with a placement, its keyless records are placed in runs. NULL when librdkafka
 * refuses the topic. A handle that already existed keeps its partitioner: the caller checks rd_kafka_topic_opaque. */
rd_kafka_topic_t *eos_topic_new(rd_kafka_t *rk, const char *topic, struct eos_placement *placement) {
        rd_kafka_topic_conf_t *conf;
        if (!placement)
                return rd_kafka_topic_new(rk, topic, NULL);
        /* The producer's topic-level properties (acks, compression, ...) are in its default topic conf. */
        conf = rd_kafka_default_topic_conf_dup(rk);
        rd_kafka_topic_conf_set_opaque(conf, placement);
        rd_kafka_topic_conf_set_partitioner_cb(conf, place);
        return rd_kafka_topic_new(rk, topic, conf); /* owns conf, also when it fails */
}

/* Counts a keyless record into its topic's run, first starting the next run when the record would not fit. The
 * size is what librdkafka's request writer reserves for it (rd_kafka_msg_wire_size); hdr_bytes is its headers'
 * names and values, summed where eos_produce builds them. */
static void placement_add(struct eos_placement *pl, const struct eos_out *o, int64_t hdr_bytes) {
        int64_t size = EOS_RD_MESSAGE_V2_MAX_OVERHEAD + (o->key_len > 0 ? o->key_len : 0) +
                       (o->value_len > 0 ? o->value_len : 0) + o->hdr_count * EOS_RD_HEADER_MAX_OVERHEAD + hdr_bytes;
        if (pl->run_msgs > 0 && (pl->run_msgs >= pl->max_msgs || pl->run_bytes + size > pl->max_bytes)) {
                __atomic_add_fetch(&pl->run, 1, __ATOMIC_RELAXED);
                pl->run_bytes = 0;
                pl->run_msgs = 0;
        }
        pl->run_bytes += size;
        pl->run_msgs++;
}

/* Produces outs in order, copying each record into librdkafka, and stops at the first refusal: *done is the
 * number produced, the result the refusal's error code (0 when all were produced). */
int eos_produce(rd_kafka_t *rk, struct eos_client *cl, const struct eos_out *outs, size_t n,
                const struct eos_out_hdr *hdrs, const char *arena, size_t *done) {
        size_t i;
        uint64_t epoch;
        pthread_mutex_lock(&cl->mu);
        epoch = cl->epoch;
        pthread_mutex_unlock(&cl->mu);
        for (i = 0; i < n; i++) {
                const struct eos_out *o = &outs[i];
                rd_kafka_headers_t *h = NULL;
                int err;
                int32_t k;
                int64_t hdr_bytes = 0;
                if (o->hdr_count > 0) {
                        h = rd_kafka_headers_new((size_t)o->hdr_count);
                        for (k = 0; k < o->hdr_count; k++) {
                                const struct eos_out_hdr *oh = &hdrs[o->hdr_first + k];
                                hdr_bytes += oh->name_len + (oh->value_len > 0 ? oh->value_len : 0);
                                rd_kafka_header_add(h, arena + oh->name_off, (ssize_t)oh->name_len,
                                                    oh->value_len < 0 ? NULL : arena + oh->value_off,
                                                    oh->value_len < 0 ? 0 : (ssize_t)oh->value_len);
                        }
                }
                if (o->placement && o->partition == EOS_RD_PARTITION_UA && o->key_len <= 0)
                        placement_add(o->placement, o, hdr_bytes);
                __atomic_add_fetch(&cl->pending, 1, __ATOMIC_SEQ_CST);
                /* A NULL headers list is no headers. */
                err = rd_kafka_producev(
                    rk, EOS_RD_VTYPE_RKT, o->rkt, EOS_RD_VTYPE_PARTITION, o->partition, EOS_RD_VTYPE_MSGFLAGS,
                    (int)EOS_RD_MSG_F_COPY, EOS_RD_VTYPE_VALUE, o->value_len < 0 ? NULL : (void *)(arena + o->value_off),
                    (size_t)(o->value_len < 0 ? 0 : o->value_len), EOS_RD_VTYPE_KEY,
                    o->key_len < 0 ? NULL : (const void *)(arena + o->key_off), (size_t)(o->key_len < 0 ? 0 : o->key_len),
                    EOS_RD_VTYPE_TIMESTAMP, o->timestamp, EOS_RD_VTYPE_OPAQUE, (void *)(uintptr_t)epoch,
                    EOS_RD_VTYPE_HEADERS, h, EOS_RD_VTYPE_END);
                if (err) {
                        __atomic_sub_fetch(&cl->pending, 1, __ATOMIC_SEQ_CST);
                        if (h) /* owned by the message only when it was produced */
                                rd_kafka_headers_destroy(h);
                        *done = i;
                        return err;
                }
        }
        *done = n;
        return 0;
}

void eos_begin_epoch(struct eos_client *cl, uint64_t epoch) {
        pthread_mutex_lock(&cl->mu);
        cl->epoch = epoch;
        cl->dr_err = 0;
        pthread_mutex_unlock(&cl->mu);
}

int64_t eos_pending(struct eos_client *cl) {
        return __atomic_load_n(&cl->pending, __ATOMIC_SEQ_CST);
}

/* Called once librdkafka refused a record with QUEUE_FULL: waits until a quarter of the records pending then have
 * been reported (the queue has room for a quarter more) or timeout_ms passed. Returns 1 when there is room. */
int eos_wait_room(struct eos_client *cl, int timeout_ms) {
        struct timespec deadline;
        int64_t below;
        int room;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&cl->mu);
        below = __atomic_load_n(&cl->pending, __ATOMIC_SEQ_CST) * 3 / 4 + 1;
        __atomic_store_n(&cl->wake_below, below, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&cl->pending, __ATOMIC_SEQ_CST) >= below)
                if (pthread_cond_timedwait(&cl->room, &cl->mu, &deadline) != 0)
                        break;
        room = __atomic_load_n(&cl->pending, __ATOMIC_SEQ_CST) < below;
        __atomic_store_n(&cl->wake_below, 0, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&cl->mu);
        return room;
}

int eos_delivery_error(struct eos_client *cl, char *topic, size_t topic_size, int32_t *partition) {
        int err;
        pthread_mutex_lock(&cl->mu);
        err = cl->dr_err;
        if (err) {
                strncpy(topic, cl->dr_topic, topic_size - 1);
                topic[topic_size - 1] = '\0';
                *partition = cl->dr_partition;
        }
        pthread_mutex_unlock(&cl->mu);
        return err;
}

void eos_list_add(rd_kafka_topic_partition_list_t *list, const char *topic, int32_t partition, int64_t offset) {
        struct eos_rd_topic_partition *p =
            (struct eos_rd_topic_partition *)rd_kafka_topic_partition_list_add(list, topic, partition);
        p->offset = offset;
}

struct eos_rd_topic_partition *eos_list_elems(rd_kafka_topic_partition_list_t *list, int *cnt) {
        struct eos_rd_topic_partition_list *l = (struct eos_rd_topic_partition_list *)list;
        *cnt = l->cnt;
        return l->elems;
}
