package librdkafka

/*
#include <pthread.h>
#include <stdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "decl.h"

// The configuration dump librdkafka logs at client creation (debug=conf), collected for redactedProperties.
static pthread_mutex_t eos_dump_lock = PTHREAD_MUTEX_INITIALIZER;
static char eos_dump[65536];

static void eos_dump_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
	if (strcmp(fac, "CONF") != 0)
		return;
	pthread_mutex_lock(&eos_dump_lock);
	size_t used = strlen(eos_dump), n = strlen(buf);
	if (used + n + 2 < sizeof(eos_dump)) {
		memcpy(eos_dump + used, buf, n);
		eos_dump[used + n] = '\n';
		eos_dump[used + n + 1] = '\0';
	}
	pthread_mutex_unlock(&eos_dump_lock);
}

// eos_properties_table is librdkafka's table of properties (CONFIGURATION.md), kept for the process's life.
static const char *eos_properties_table(void) {
	static char *table = NULL;
	static size_t len = 0;
	if (table == NULL) {
		FILE *f = open_memstream(&table, &len);
		if (f == NULL)
			return "";
		rd_kafka_conf_properties_show(f);
		fclose(f);
	}
	return table;
}

// eos_dump_with sets name to value on a producer's configuration, creates the producer with debug=conf, and
// returns its configuration dump (free it), or NULL when librdkafka refuses the value or the client.
static char *eos_dump_with(const char *name, const char *value) {
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != 0 ||
	    rd_kafka_conf_set(conf, "debug", "conf", errstr, sizeof(errstr)) != 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, eos_dump_log);
	pthread_mutex_lock(&eos_dump_lock);
	eos_dump[0] = '\0';
	pthread_mutex_unlock(&eos_dump_lock);
	rd_kafka_t *rk = rd_kafka_new(0, conf, errstr, sizeof(errstr)); // 0: RD_KAFKA_PRODUCER
	if (rk == NULL) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_destroy(rk);
	pthread_mutex_lock(&eos_dump_lock);
	char *dump = strdup(eos_dump);
	pthread_mutex_unlock(&eos_dump_lock);
	return dump;
}
*/
import "C"

import (
	"strings"
	"unsafe"
)

// propertyNames are the names of every client (global) property librdkafka knows, from the table it prints.
func propertyNames() []string {
	text := C.GoString(C.eos_properties_table())
	var names []string
	for _, line := range strings.Split(text, "\n") {
		// Rows are "name | C/P | range | default | importance | description"; the global table comes first.
		if strings.HasPrefix(line, "## Topic configuration") {
			break
		}
		name, _, ok := strings.Cut(line, "|")
		name = strings.TrimSpace(name)
		if ok && name != "" && name != "Property" && !strings.HasPrefix(name, "-") {
			names = append(names, name)
		}
	}
	return names
}

// redactedProperties sets each property librdkafka knows to marker, where librdkafka accepts that value (string
// properties), and returns those its own configuration dump shows as "[redacted]": its sensitive properties. It
// exists for the test that keeps rdkafka.IsSecret a superset of them.
func redactedProperties(marker string) (redacted, checked []string) {
	cmarker := C.CString(marker)
	defer C.free(unsafe.Pointer(cmarker))
	for _, name := range propertyNames() {
		cname := C.CString(name)
		dump := C.eos_dump_with(cname, cmarker)
		C.free(unsafe.Pointer(cname))
		if dump == nil {
			continue
		}
		text := C.GoString(dump)
		C.free(unsafe.Pointer(dump))
		for _, line := range strings.Split(text, "\n") {
			_, line, _ = strings.Cut(line, "]: ") // after librdkafka's "[thrd:app]: "
			if k, v, ok := strings.Cut(strings.TrimSpace(line), " = "); ok && k == name {
				checked = append(checked, name)
				if v == "[redacted]" {
					redacted = append(redacted, name)
				}
			}
		}
	}
	return redacted, checked
}
