package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// Build builds a lab outside of a test (for the demo program). Unlike New it
// returns errors instead of failing a test, and the caller must call Close
// on the returned lab, also when a later step fails. A lab that fails to
// build is removed before Build returns.
func Build(cfg Config) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("netlab: building a lab needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("netlab: iproute2 `ip` is needed: %w", err)
	}
	removeStale()
	l := &Lab{Name: fmt.Sprintf("%s-%d-%d", nsPrefix, os.Getpid(), labSeq.Add(1))}
	if err := l.build(cfg); err != nil {
		l.Close()
		return nil, fmt.Errorf("netlab: building lab: %w", err)
	}
	return l, nil
}
