package librdkafka

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// bundledVersion is the librdkafka this package was written against: the one confluent-kafka-go v2.11.1 bundles.
// A new confluent-kafka-go brings a new librdkafka; then read its changelog for what this package relies on (the
// rebalance callback being served by rd_kafka_consume_batch_queue, the struct layouts below, the per-record
// overhead in decl.h that keyless runs are sized by) and update both.
const bundledVersion = 0x020b01ff

func TestLinkedLibrdkafkaIsTheBundledVersion(t *testing.T) {
	if v := Version(); v != bundledVersion {
		t.Fatalf("linked librdkafka is %#x (%s), this package was checked against %#x", v, VersionString(), bundledVersion)
	}
}

// TestDeclarationsMatchTheBundledHeader compiles decl.h after the rdkafka.h that confluent-kafka-go bundles: a
// prototype that disagrees with the real one is a compile error, and static assertions compare each mirrored
// struct's size and field offsets, and each constant, with librdkafka's.
func TestDeclarationsMatchTheBundledHeader(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/confluentinc/confluent-kafka-go/v2").Output()
	if err != nil {
		t.Fatalf("locate confluent-kafka-go: %v", err)
	}
	vendor := filepath.Join(strings.TrimSpace(string(out)), "kafka", "librdkafka_vendor")
	decl, err := os.ReadFile("decl.h")
	if err != nil {
		t.Fatal(err)
	}
	src := "#include \"rdkafka.h\"\n#include \"decl.h\"\n#include <stddef.h>\n" + assertions(t, string(decl))
	dir := t.TempDir()
	file := filepath.Join(dir, "pin.c")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cc := "gcc"
	if v, err := exec.Command("go", "env", "CC").Output(); err == nil && strings.TrimSpace(string(v)) != "" {
		cc = strings.Fields(string(v))[0]
	}
	wd, _ := os.Getwd()
	cmd := exec.Command(cc, "-fsyntax-only", "-std=gnu11", "-I", vendor, "-I", wd, file)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("decl.h disagrees with the bundled rdkafka.h (%v):\n%s", err, msg)
	}
}

// assertions turns decl.h's "mirror: T" structs and "= NAME" constants into C static assertions.
func assertions(t *testing.T, decl string) string {
	var b strings.Builder
	mirrors := regexp.MustCompile(`(?s)/\* mirror: (\w+) \*/\s*struct (\w+) \{(.*?)\};`).FindAllStringSubmatch(decl, -1)
	if len(mirrors) == 0 {
		t.Fatal("no mirrored structs found in decl.h")
	}
	field := regexp.MustCompile(`(\w+);`)
	for _, m := range mirrors {
		real, ours := m[1], "struct "+m[2]
		b.WriteString("_Static_assert(sizeof(" + ours + ") == sizeof(" + real + "), \"size of " + real + "\");\n")
		for _, f := range field.FindAllStringSubmatch(m[3], -1) {
			b.WriteString("_Static_assert(offsetof(" + ours + ", " + f[1] + ") == offsetof(" + real + ", " + f[1] +
				"), \"" + real + "." + f[1] + "\");\n")
		}
	}
	consts := regexp.MustCompile(`#define (EOS_RD_\w+) .*/\* = (\w+) \*/`).FindAllStringSubmatch(decl, -1)
	if len(consts) == 0 {
		t.Fatal("no constants found in decl.h")
	}
	for _, c := range consts {
		b.WriteString("_Static_assert(" + c[1] + " == " + c[2] + ", \"" + c[2] + "\");\n")
	}
	return b.String()
}
