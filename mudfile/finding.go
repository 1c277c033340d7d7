package mudfile

import (
	"fmt"
	"strings"
)

// Severity says whether a finding makes the file invalid.
type Severity uint8

const (
	// Warning: the file is usable; something was normalised, ignored or
	// is worth an administrator's attention.
	Warning Severity = iota + 1
	// Error: the file must not be enforced.
	Error
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case Error:
		return "error"
	}
	return fmt.Sprintf("severity(%d)", uint8(s))
}

// MarshalText makes severities readable in JSON.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Finding is one thing validation has to say about a file.
type Finding struct {
	// Path locates the node, e.g.
	// /ietf-access-control-list:acls/acl[name='x']/aces/ace[name='y']/matches/ipv4.
	// Member names are as written in the file, so a user can find them.
	Path     string   `json:"path"`
	Severity Severity `json:"severity"`
	// Code is a short stable identifier of the rule (for tests and for
	// tools that want to filter), e.g. "cache-validity-range".
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %s: %s [%s]", f.Severity, f.Path, f.Message, f.Code)
}

// Result is the outcome of Parse: the normalised file (nil when the bytes
// could not be read as a MUD file at all) and every finding.
type Result struct {
	File     *File
	Findings []Finding
}

// Valid reports whether the file can be used: it was decoded and no finding
// is an error.
func (r *Result) Valid() bool {
	return r.File != nil && len(r.Errors()) == 0
}

// Errors returns the findings of severity Error.
func (r *Result) Errors() []Finding { return r.bySeverity(Error) }

// Warnings returns the findings of severity Warning.
func (r *Result) Warnings() []Finding { return r.bySeverity(Warning) }

func (r *Result) bySeverity(s Severity) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity == s {
			out = append(out, f)
		}
	}
	return out
}

// HasCode reports whether some finding has the given code (tests and tools
// use it to ask "was this rule triggered?").
func (r *Result) HasCode(code string) bool {
	for _, f := range r.Findings {
		if f.Code == code {
			return true
		}
	}
	return false
}

// keyPred renders a list-entry predicate for a JSON path: [name='x'], or the
// 1-based position when the entry has no usable name.
func keyPred(key, name string, pos int) string {
	switch {
	case name == "":
		return fmt.Sprintf("[%d]", pos)
	case !strings.Contains(name, "'"):
		return "[" + key + "='" + name + "']"
	case !strings.Contains(name, `"`):
		return "[" + key + `="` + name + `"]`
	}
	return fmt.Sprintf("[%d]", pos)
}
