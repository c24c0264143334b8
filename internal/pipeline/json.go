package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxDepth bounds nesting as encoding/json does, so a hostile value cannot exhaust the stack.
const maxDepth = 10000

// decodeJSON parses one JSON value into what expressions read: map[string]any, []any, string, bool, nil, and
// numbers as int when they are integers that fit (an order id above 2^53 must come out of a map stage exactly as
// it went in; encoding/json would round it through float64) or else float64.
//
// It is a hand-written parser because parsing is most of a stage's cost: encoding/json's Decoder, the only way
// to keep integers exact there, took ~3x as long on a 200-byte order. Strings with escapes or non-ASCII bytes
// are handed to encoding/json, so their decoding (surrogates, invalid UTF-8) is the standard one;
// FuzzDecodeJSONAgreesWithEncodingJSON holds the two parsers to the same verdicts.
func decodeJSON(b []byte) (any, error) {
	d := decoder{data: b}
	d.ws()
	if d.pos == len(d.data) {
		return nil, errors.New("empty value")
	}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.ws(); d.pos != len(d.data) {
		return nil, fmt.Errorf("data after the JSON value at byte %d", d.pos)
	}
	return v, nil
}

type decoder struct {
	data []byte
	pos  int
}

func (d *decoder) ws() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) fail(what string) error {
	if d.pos >= len(d.data) {
		return fmt.Errorf("unexpected end of JSON input, want %s", what)
	}
	return fmt.Errorf("invalid character %q at byte %d, want %s", d.data[d.pos], d.pos, what)
}

func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d at byte %d", maxDepth, d.pos)
	}
	if d.pos >= len(d.data) {
		return nil, d.fail("a value")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.array(depth)
	case c == '"':
		return d.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case d.literal("true"):
		return true, nil
	case d.literal("false"):
		return false, nil
	case d.literal("null"):
		return nil, nil
	}
	return nil, d.fail("a value")
}

func (d *decoder) literal(word string) bool {
	if bytes.HasPrefix(d.data[d.pos:], []byte(word)) {
		d.pos += len(word)
		return true
	}
	return false
}

func (d *decoder) object(depth int) (any, error) {
	d.pos++ // {
	m := map[string]any{}
	d.ws()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return m, nil
	}
	for {
		d.ws()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.fail("a member name")
		}
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		d.ws()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.fail(`":"`)
		}
		d.pos++
		d.ws()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[k] = v
		d.ws()
		if d.pos < len(d.data) {
			switch d.data[d.pos] {
			case ',':
				d.pos++
				continue
			case '}':
				d.pos++
				return m, nil
			}
		}
		return nil, d.fail(`"," or "}"`)
	}
}

func (d *decoder) array(depth int) (any, error) {
	d.pos++ // [
	a := []any{}
	d.ws()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return a, nil
	}
	for {
		d.ws()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.ws()
		if d.pos < len(d.data) {
			switch d.data[d.pos] {
			case ',':
				d.pos++
				continue
			case ']':
				d.pos++
				return a, nil
			}
		}
		return nil, d.fail(`"," or "]"`)
	}
}

func (d *decoder) str() (string, error) {
	start := d.pos
	d.pos++ // "
	simple := true
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			if simple {
				return string(d.data[start+1 : d.pos-1]), nil
			}
			var s string
			if err := json.Unmarshal(d.data[start:d.pos], &s); err != nil {
				return "", fmt.Errorf("string at byte %d: %w", start, err)
			}
			return s, nil
		case c == '\\':
			simple = false
			d.pos += 2 // the escaped character, whatever it is, cannot end the string
			continue
		case c < 0x20:
			return "", d.fail("no control character in a string")
		case c >= utf8.RuneSelf:
			simple = false
		}
		d.pos++
	}
	d.pos = len(d.data)
	return "", d.fail(`the closing '"' of a string`)
}

func (d *decoder) number() (any, error) {
	start := d.pos
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case d.digits() == 0:
		return nil, d.fail("a digit")
	}
	integer := true
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		integer = false
		d.pos++
		if d.digits() == 0 {
			return nil, d.fail("a digit after the decimal point")
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		integer = false
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if d.digits() == 0 {
			return nil, d.fail("a digit in the exponent")
		}
	}
	if digits := d.data[start:d.pos]; integer && len(digits) <= 18 {
		// Up to 18 digits cannot overflow an int64: no string to allocate for strconv.
		neg := digits[0] == '-'
		if neg {
			digits = digits[1:]
		}
		n := 0
		for _, c := range digits {
			n = n*10 + int(c-'0')
		}
		if neg {
			n = -n
		}
		return n, nil
	}
	text := string(d.data[start:d.pos])
	if integer {
		if i, err := strconv.ParseInt(text, 10, 64); err == nil {
			return int(i), nil
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return nil, fmt.Errorf("number %s at byte %d: out of range", text, start)
	}
	return f, nil
}

func (d *decoder) digits() int {
	n := 0
	for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
		d.pos++
		n++
	}
	return n
}
