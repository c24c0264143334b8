package processor

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from the Config struct")

// TestConfigurationReferenceIsCurrent fails when docs/configuration.md no longer matches the Config struct, so a
// new or changed variable cannot ship undocumented. `make docs` (this test with -update) regenerates it.
func TestConfigurationReferenceIsCurrent(t *testing.T) {
	path := filepath.Join("..", "docs", "configuration.md")
	var want bytes.Buffer
	WriteReference(&want)
	if *update {
		if err := os.WriteFile(path, want.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run `make docs` to generate it", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("%s is stale: the Config struct changed; run `make docs` and commit the result", path)
	}
	for _, f := range fields() {
		if !bytes.Contains(got, []byte("`"+EnvPrefix+f.key+"`")) {
			t.Errorf("%s lacks %s%s", path, EnvPrefix, f.key)
		}
	}
}
