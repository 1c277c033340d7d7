package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/openmud/mud/internal/lab/gwlab"
)

// Names and addresses of the lab's internet (all documentation ranges).
// netlab gives server j the address 203.0.113.<10+j>.
const (
	mudHost   = gwlab.DefaultMUDHost // the manufacturer's MUD server (server 1)
	cloudHost = "cloud.example.com"  // the service the MUD file permits (server 2)
	otherHost = "other.example.net"  // a host the MUD file does not name (server 3)

	permittedPort = 443  // the port the MUD file permits to cloud.example.com
	otherPort     = 8080 // a port it does not
)

var mudURL = "https://" + mudHost + "/lightbulb2000.json"

// mudFile is the example of RFC 8520 §9, made IPv4: the light bulb may open
// TCP connections to port 443 of its cloud service, and receive the answers,
// and nothing else. The cloud service is a host of the lab.
var mudFile = gwlab.File{
	URL: mudURL, Mfg: "Example", Model: "lightbulb2000",
	From: []gwlab.Rule{{Remote: cloudHost, RemotePort: permittedPort, Initiated: "from-device"}},
	To:   []gwlab.Rule{{Remote: cloudHost, RemotePort: permittedPort, Initiated: "from-device"}},
}

// poll calls fn until it succeeds, ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, fn func() error) error {
	return gwlab.Poll(ctx, timeout, fn)
}

// indent prefixes every line of s, for output nested under a step.
func indent(w io.Writer, s string) {
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Fprintln(w, "    "+line)
	}
}
