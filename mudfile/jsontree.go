package mudfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// object is a decoded JSON object that remembers the order of its members,
// so that findings come out in document order and ACE order is preserved.
type object struct {
	keys []string
	m    map[string]any
}

func (o *object) get(k string) (any, bool) {
	v, ok := o.m[k]
	return v, ok
}

// decodeError is a structural problem found while decoding: it carries the
// JSON path where it was found so the user can locate it.
type decodeError struct {
	path string
	msg  string
}

func (e *decodeError) Error() string { return e.path + ": " + e.msg }

// decodeTree decodes one JSON value into ordered objects, []any, string,
// json.Number, bool or nil. Unlike encoding/json into a map, it rejects
// duplicate member names: "last one wins" is how other managers silently
// misread files, and RFC 7951 data cannot contain them.
func decodeTree(data []byte, maxDepth int) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, "", 0, maxDepth)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &decodeError{path: "/", msg: "trailing data after the JSON document"}
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, path string, depth, maxDepth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(dec, path, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	// Checked before recursing, so a hostile file cannot make us recurse
	// without bound.
	if depth+1 > maxDepth {
		return nil, &decodeError{path: orRoot(path), msg: fmt.Sprintf("JSON nesting deeper than %d levels: refused (a MUD file needs about 12)", maxDepth)}
	}
	switch d {
	case '{':
		o := &object{m: map[string]any{}}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, syntaxError(dec, path, err)
			}
			k, _ := kt.(string)
			if _, dup := o.m[k]; dup {
				return nil, &decodeError{path: path + "/" + k, msg: fmt.Sprintf("member %q appears twice in the same object; which one applies is ambiguous", k)}
			}
			v, err := decodeValue(dec, path+"/"+k, depth+1, maxDepth)
			if err != nil {
				return nil, err
			}
			o.keys = append(o.keys, k)
			o.m[k] = v
		}
		if _, err := dec.Token(); err != nil {
			return nil, syntaxError(dec, path, err)
		}
		return o, nil
	case '[':
		arr := []any{}
		for i := 0; dec.More(); i++ {
			v, err := decodeValue(dec, fmt.Sprintf("%s[%d]", path, i+1), depth+1, maxDepth)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, syntaxError(dec, path, err)
		}
		return arr, nil
	}
	return nil, &decodeError{path: orRoot(path), msg: fmt.Sprintf("unexpected %v", d)}
}

func syntaxError(dec *json.Decoder, path string, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return &decodeError{path: orRoot(path), msg: fmt.Sprintf("invalid JSON near byte %d: %v", dec.InputOffset(), err)}
}

func orRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}
