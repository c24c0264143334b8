package dedupe

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/eosproc/eosproc/stream"
)

func TestParseIdentitySpec(t *testing.T) {
	tests := []struct {
		spec    string
		want    IdentitySpec
		wantErr string // substring; empty means success
	}{
		{spec: "key", want: IdentitySpec{From: FromKey}},
		{spec: "  key ", want: IdentitySpec{From: FromKey}},
		{spec: "header:x-id", want: IdentitySpec{From: FromHeader, Header: "x-id"}},
		{spec: "header:a:b", want: IdentitySpec{From: FromHeader, Header: "a:b"}},
		{spec: "json:id", want: IdentitySpec{From: FromJSON, Path: "id"}},
		{spec: "json:order.id", want: IdentitySpec{From: FromJSON, Path: "order.id"}},
		{spec: "", wantErr: `unknown source ""`},
		{spec: "Key", wantErr: `unknown source "Key"`},
		{spec: "value", wantErr: `unknown source "value"`},
		{spec: "key:x", wantErr: "key takes no argument"},
		{spec: "header", wantErr: "header name is empty"},
		{spec: "header:", wantErr: "header name is empty"},
		{spec: "json:", wantErr: "JSON path is empty"},
		{spec: "json", wantErr: "JSON path is empty"},
		{spec: "json:order..id", wantErr: "empty segment"},
		{spec: "json:.id", wantErr: "empty segment"},
		{spec: "json:id.", wantErr: "empty segment"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseIdentitySpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseIdentitySpec(%q) error = %v, want one containing %q", tt.spec, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "want") {
					t.Errorf("error %q does not say what is wanted", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseIdentitySpec(%q): %v", tt.spec, err)
			}
			if got != tt.want {
				t.Fatalf("ParseIdentitySpec(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
			if again, err := ParseIdentitySpec(got.String()); err != nil || again != got {
				t.Fatalf("String() %q does not parse back: %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestExtractIdentity(t *testing.T) {
	const order = `{"kind":"order","meta":{"tags":["a","b",{"x":[1,2,{"id":"decoy"}]}],"n":null,"ok":true},` +
		`"order":{"total":12.5e-1,"id":"o-17","customer":{"id":4711}},"id":-3.25E+2}`
	tests := []struct {
		name    string
		spec    IdentitySpec
		rec     stream.Record
		want    string
		wantIs  error  // for errors
		wantMsg string // substring of the error
	}{
		{name: "key", spec: IdentitySpec{}, rec: stream.Record{Key: []byte("k1")}, want: "k1"},
		{name: "null key", spec: IdentitySpec{}, rec: stream.Record{}, wantIs: ErrNoIdentity, wantMsg: "null or empty key"},
		{name: "empty key", spec: IdentitySpec{}, rec: stream.Record{Key: []byte{}}, wantIs: ErrNoIdentity, wantMsg: "null or empty key"},
		{
			name: "header", spec: IdentitySpec{From: FromHeader, Header: "id"},
			rec:  stream.Record{Headers: []stream.Header{{Key: "trace", Value: []byte("t")}, {Key: "id", Value: []byte("h1")}}},
			want: "h1",
		},
		{
			name: "repeated header, last wins", spec: IdentitySpec{From: FromHeader, Header: "id"},
			rec:  stream.Record{Headers: []stream.Header{{Key: "id", Value: []byte("first")}, {Key: "id", Value: []byte("last")}}},
			want: "last",
		},
		{
			name: "header names are case-sensitive", spec: IdentitySpec{From: FromHeader, Header: "id"},
			rec:    stream.Record{Headers: []stream.Header{{Key: "ID", Value: []byte("h1")}}},
			wantIs: ErrNoIdentity, wantMsg: `header "id": record has no such header`,
		},
		{
			name: "empty header value", spec: IdentitySpec{From: FromHeader, Header: "id"},
			rec:    stream.Record{Headers: []stream.Header{{Key: "id"}}},
			wantIs: ErrNoIdentity, wantMsg: "header value is empty",
		},
		{name: "top-level number", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(order), want: "-3.25E+2"},
		{name: "nested string", spec: IdentitySpec{From: FromJSON, Path: "order.id"}, rec: rec(order), want: "o-17"},
		{name: "nested number", spec: IdentitySpec{From: FromJSON, Path: "order.customer.id"}, rec: rec(order), want: "4711"},
		{name: "whitespace", spec: IdentitySpec{From: FromJSON, Path: "a.b"}, rec: rec(" \n{ \"a\" :\t{\"b\" : 7 } } \r\n"), want: "7"},
		{name: "escaped value", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"id":"a\"b\u00e9\n"}`), want: "a\"b\u00e9\n"},
		{name: "escaped member name", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"i\u0064":"x"}`), want: "x"},
		{name: "first repeated member wins", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"id":1,"id":2}`), want: "1"},
		{name: "invalid UTF-8 kept as is", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec("{\"id\":\"\xff\"}"), want: "\xff"},
		{name: "unicode value kept raw", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"id":"日本"}`), want: "日本"},
		{
			name: "missing top-level field", spec: IdentitySpec{From: FromJSON, Path: "missing"}, rec: rec(order),
			wantIs: ErrNoIdentity, wantMsg: `field "missing" missing: no member "missing" in the top-level object`,
		},
		{
			name: "missing nested field", spec: IdentitySpec{From: FromJSON, Path: "order.customer.name"}, rec: rec(order),
			wantIs: ErrNoIdentity, wantMsg: `no member "name" in object "order.customer"`,
		},
		{
			name: "missing in empty object", spec: IdentitySpec{From: FromJSON, Path: "a.b"}, rec: rec(`{"a":{}}`),
			wantIs: ErrNoIdentity, wantMsg: `no member "b" in object "a"`,
		},
		{
			name: "path through a string", spec: IdentitySpec{From: FromJSON, Path: "kind.id"}, rec: rec(order),
			wantIs: ErrNoIdentity, wantMsg: `field "kind" is a string, not an object`,
		},
		{
			name: "path through an array", spec: IdentitySpec{From: FromJSON, Path: "meta.tags.x"}, rec: rec(order),
			wantIs: ErrNoIdentity, wantMsg: `field "meta.tags" is an array, not an object`,
		},
		{
			name: "array index is not a member", spec: IdentitySpec{From: FromJSON, Path: "meta.tags.0"}, rec: rec(order),
			wantIs: ErrNoIdentity, wantMsg: `field "meta.tags" is an array, not an object`,
		},
		{name: "digit member name", spec: IdentitySpec{From: FromJSON, Path: "a.0"}, rec: rec(`{"a":{"0":"zero"}}`), want: "zero"},
		{name: "wildcard is a member name", spec: IdentitySpec{From: FromJSON, Path: "o*"}, rec: rec(`{"order":1,"o*":2}`), want: "2"},
		{name: "null field", spec: IdentitySpec{From: FromJSON, Path: "meta.n"}, rec: rec(order), wantIs: ErrNoIdentity, wantMsg: `field "meta.n" is null, want a string or a number`},
		{name: "boolean field", spec: IdentitySpec{From: FromJSON, Path: "meta.ok"}, rec: rec(order), wantIs: ErrNoIdentity, wantMsg: "is a boolean"},
		{name: "object field", spec: IdentitySpec{From: FromJSON, Path: "order"}, rec: rec(order), wantIs: ErrNoIdentity, wantMsg: "is an object"},
		{name: "empty string field", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"id":""}`), wantIs: ErrNoIdentity, wantMsg: "empty string"},
		{name: "empty value", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(``), wantIs: ErrMalformedJSON, wantMsg: "unexpected end"},
		{name: "not JSON", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`id=1`), wantIs: ErrMalformedJSON, wantMsg: `invalid character 'i' looking for beginning of value (byte 1 of 4)`},
		{name: "top-level array", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`[{"id":1}]`), wantIs: ErrMalformedJSON, wantMsg: "is an array, not an object"},
		{name: "truncated before field", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"a":[1,2`), wantIs: ErrMalformedJSON},
		{name: "truncated after field", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"id":1,"b":`), wantIs: ErrMalformedJSON},
		{name: "unclosed after field", spec: IdentitySpec{From: FromJSON, Path: "a.id"}, rec: rec(`{"a":{"id":1}`), wantIs: ErrMalformedJSON},
		{name: "garbage after value", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"id":1} x`), wantIs: ErrMalformedJSON, wantMsg: "after top-level value"},
		{name: "bad number", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"id":01}`), wantIs: ErrMalformedJSON},
		{name: "bad number in skipped value", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"a":1.,"id":1}`), wantIs: ErrMalformedJSON, wantMsg: "after decimal point"},
		{name: "bad literal", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"a":tru,"id":1}`), wantIs: ErrMalformedJSON},
		{name: "bad escape", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"id":"a\x"}`), wantIs: ErrMalformedJSON},
		{name: "control character", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec("{\"id\":\"a\tb\"}"), wantIs: ErrMalformedJSON},
		{name: "mismatched brackets", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"a":[1},"id":1}`), wantIs: ErrMalformedJSON},
		{name: "missing colon", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"id" 1}`), wantIs: ErrMalformedJSON, wantMsg: "after object key"},
		{name: "trailing comma", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"a":1,}`), wantIs: ErrMalformedJSON},
		{
			name: "brackets in a string are not nesting", spec: IdentitySpec{From: FromJSON, Path: "id"},
			rec: rec(`{"id":"` + strings.Repeat("[", maxJSONDepth+1) + `"}`), want: strings.Repeat("[", maxJSONDepth+1),
		},
		{name: "too deep", spec: IdentitySpec{From: FromJSON, Path: "id"}, rec: rec(`{"a":` + strings.Repeat("[", maxJSONDepth+1) + `]}`), wantIs: ErrMalformedJSON, wantMsg: "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.spec.Extract(tt.rec)
			if tt.wantIs != nil || tt.wantMsg != "" {
				if err == nil {
					t.Fatalf("Extract = %q, want an error", got)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("error %q does not wrap %v", err, tt.wantIs)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("error %q does not contain %q", err, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("Extract = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestJSONIdentityBytesAreStable pins the identity bytes a JSON path yields to those the processor has written to
// de-duplication changelogs since identities were first read from JSON (recorded from the hand-written scanner this
// package used before gjson): a change here would let a duplicate through after an upgrade, or drop a record.
func TestJSONIdentityBytesAreStable(t *testing.T) {
	tests := []struct{ value, path, want string }{
		{"{\"id\":\"o-17\"}", "id", "o-17"},
		{"{\"id\":-3.25E+2}", "id", "-3.25E+2"},
		{"{\"id\":0}", "id", "0"},
		{"{\"id\":-0}", "id", "-0"},
		{"{\"id\":1e400}", "id", "1e400"},
		{"{\"id\":12345678901234567890123}", "id", "12345678901234567890123"},
		{"{\"id\":4711.000}", "id", "4711.000"},
		{"{\"id\":\"a\\\"b\\u00e9\\n\"}", "id", "a\"bé\n"},
		{"{\"id\":\"\\ud83d\\ude00\"}", "id", "😀"},
		{"{\"id\":\"\\ud800\"}", "id", "�"},
		{"{\"id\":\"\\ud800x\"}", "id", "�x"},
		{"{\"id\":\"\\udc00\\ud800\"}", "id", "��"},
		{"{\"id\":\"\\u0000\"}", "id", "\x00"},
		{"{\"id\":\"\\/\"}", "id", "/"},
		{"{\"id\":\"\xff\"}", "id", "\xff"},
		{"{\"id\":\"a\\u00e9\xff\"}", "id", "aé�"},
		{"{\"id\":\"日本\"}", "id", "日本"},
		{"{\"id\":\"\\u65e5\\u672C\"}", "id", "日本"},
		{"{\"a\":{\"b\":{\"c\":\"x\"}}}", "a.b.c", "x"},
		{"{\"i\\u0064\":\"x\"}", "id", "x"},
		{"{\"a*\":\"star\",\"ab\":\"no\"}", "a*", "star"},
		{"{\"ab\":\"no\",\"a?\":\"q\"}", "a?", "q"},
		{"{\"#\":\"hash\"}", "#", "hash"},
		{"{\"@this\":\"m\"}", "@this", "m"},
		{"{\"a|b\":\"p\"}", "a|b", "p"},
		{"{\"a\\\\b\":\"bs\"}", "a\\b", "bs"},
		{"{\"=\":\"eq\",\"!\":\"ex\",\"<\":\"lt\",\"%\":\"pc\"}", "=", "eq"},
		{"{\"=\":\"eq\",\"!\":\"ex\",\"<\":\"lt\",\"%\":\"pc\"}", "%", "pc"},
		{"{\"0\":\"zero\"}", "0", "zero"},
		{"{\"a b\":\"s\"}", "a b", "s"},
		{"{\"ключ\":\"v\"}", "ключ", "v"},
		{"{\"id\":1,\"id\":2}", "id", "1"},
		{"{\"x\":[{\"id\":\"decoy\"}],\"id\":\"real\"}", "id", "real"},
		{"{\"o\":{\"id\":\"in\"},\"id\":\"out\"}", "o.id", "in"},
		{"{\"(a)\":\"paren\",\"[b]\":\"br\",\"{c}\":\"cu\",\",\":\"comma\"}", "(a)", "paren"},
		{"{\"(a)\":\"paren\",\"[b]\":\"br\",\"{c}\":\"cu\",\",\":\"comma\"}", "[b]", "br"},
		{"{\"(a)\":\"paren\",\"[b]\":\"br\",\"{c}\":\"cu\",\",\":\"comma\"}", ",", "comma"},
		{"{\"~\":\"tilde\",\"..\":\"dots\"}", "~", "tilde"},
		{"{\"k\\u0000\":\"nul\"}", "k\x00", "nul"},
	}
	for _, tt := range tests {
		got, err := jsonField([]byte(tt.value), tt.path)
		if err != nil {
			t.Errorf("jsonField(%q, %q): %v", tt.value, tt.path, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("jsonField(%q, %q) = %q (% x), want %q (% x)", tt.value, tt.path, got, got, tt.want, tt.want)
		}
	}
}

func TestExtractRejectsInvalidLiteralSpec(t *testing.T) {
	for _, spec := range []IdentitySpec{{From: FromHeader}, {From: FromJSON, Path: "a..b"}, {From: Source(9)}} {
		if _, err := spec.Extract(rec(`{"a":{"":{"b":1}}}`)); err == nil {
			t.Errorf("%+v: Extract succeeded, want an error", spec)
		}
	}
}

func rec(value string) stream.Record { return stream.Record{Value: []byte(value)} }

// FuzzJSONField checks jsonField against encoding/json: invalid JSON is always an error, and a string or number
// field it finds in valid JSON is what a decoder finds there.
func FuzzJSONField(f *testing.F) {
	for _, s := range []string{
		`{"id":1}`, `{"a":{"id":"x"}}`, `{"id":"\u00e9"}`, `{"a":[1,{"b":2}],"id":-0.5e3}`, `{"id":1`, `{"id":01}`,
		`{"id":"a","id":"b"}`, `{"i\"d":1}`, `[]`, `{"id":true}`, `{"a":{"id":null}}`, " {\"id\" : \"\\/\" } ",
	} {
		f.Add([]byte(s), "id")
		f.Add([]byte(s), "a.id")
	}
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		spec := IdentitySpec{From: FromJSON, Path: path}
		if spec.Validate() != nil {
			return
		}
		got, err := jsonField(data, path)
		if !json.Valid(data) {
			if err == nil {
				t.Fatalf("jsonField(%q, %q) = %q, want an error for invalid JSON", data, path, got)
			}
			return
		}
		want, ok := decodeField(data, path)
		if !ok {
			if err == nil {
				t.Fatalf("jsonField(%q, %q) = %q, want an error", data, path, got)
			}
			return
		}
		if err != nil {
			t.Fatalf("jsonField(%q, %q): %v, want %q", data, path, err, want)
		}
		if string(got) != want && utf8.Valid(data) { // the decoder replaces invalid UTF-8; jsonField keeps bytes
			t.Fatalf("jsonField(%q, %q) = %q, want %q", data, path, got, want)
		}
	})
}

// decodeField is the slow reference: it decodes with encoding/json, first occurrence of a repeated member winning.
func decodeField(data []byte, path string) (string, bool) {
	cur := json.RawMessage(data)
	for seg := range strings.SplitSeq(path, ".") {
		dec := json.NewDecoder(strings.NewReader(string(cur)))
		dec.UseNumber()
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return "", false
		}
		found := false
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return "", false
			}
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return "", false
			}
			if k == seg && !found {
				cur, found = v, true
			}
		}
		if !found {
			return "", false
		}
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(cur)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, v != ""
	case json.Number:
		return string(v), true
	}
	return "", false
}
