package gwlab

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/openmud/mud/internal/lab/labpki"
	"github.com/openmud/mud/internal/lab/netlab"
)

// PKI is the lab's certificates: one CA that the gateway trusts both for
// the MUD servers' HTTPS certificates and as a MUD-file signer.
type PKI struct {
	CA     *labpki.CA
	CAPEM  string // path of the root certificate, as mudd's configuration names it
	Server tls.Certificate
	Signer *labpki.Leaf
}

// NewPKI creates the lab CA, writes its root into dir, and issues a server
// certificate for hosts and a MUD signer.
func NewPKI(dir string, hosts []string) (*PKI, error) {
	ca, err := labpki.NewCA("Example Lab")
	if err != nil {
		return nil, fmt.Errorf("creating the lab CA: %w", err)
	}
	p := &PKI{CA: ca, CAPEM: filepath.Join(dir, "lab-ca.pem")}
	if err := ca.WriteRootPEM(p.CAPEM); err != nil {
		return nil, fmt.Errorf("writing the lab CA certificate: %w", err)
	}
	leaf, err := ca.Server(hosts, nil)
	if err != nil {
		return nil, fmt.Errorf("issuing the MUD server's certificate: %w", err)
	}
	p.Server = leaf.TLSCertificate()
	if p.Signer, err = ca.Signer(pkix.Name{CommonName: "Example MUD signer", Organization: []string{"Example"}}); err != nil {
		return nil, fmt.Errorf("issuing the MUD signer's certificate: %w", err)
	}
	return p, nil
}

// MUDServer is the manufacturers' HTTPS server, in a server namespace. It
// serves whatever was published, by path, for every host name its
// certificate carries.
type MUDServer struct {
	srv *http.Server

	mu    sync.Mutex
	files map[string]served
	hits  []string
	hang  map[string]time.Duration // path prefix → how long requests wait
}

type served struct {
	mediaType string
	body      []byte
}

// StartMUDServer serves HTTPS on addr:443 inside namespace ns until Close.
func StartMUDServer(ns string, addr netip.Addr, cert tls.Certificate) (*MUDServer, error) {
	ln, err := netlab.Listen(ns, "tcp", netip.AddrPortFrom(addr, 443).String())
	if err != nil {
		return nil, fmt.Errorf("opening the MUD server's port in %s: %w", ns, err)
	}
	s := &MUDServer{files: map[string]served{}, hang: map[string]time.Duration{}}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serve),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	return s, nil
}

func (s *MUDServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits = append(s.hits, r.URL.Path)
	f, ok := s.files[r.URL.Path]
	var wait time.Duration
	for prefix, d := range s.hang {
		if strings.HasPrefix(r.URL.Path, prefix) {
			wait = max(wait, d)
		}
	}
	s.mu.Unlock()
	if wait > 0 {
		select {
		case <-time.After(wait):
		case <-r.Context().Done():
			return
		}
	}
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.mediaType)
	_, _ = w.Write(f.body)
}

// Put serves body at the path of rawURL (any host), replacing what was
// there.
func (s *MUDServer) Put(rawURL, mediaType string, body []byte) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("publishing %s: %w", rawURL, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[u.Path] = served{mediaType: mediaType, body: append([]byte(nil), body...)}
	return nil
}

// Hang makes requests for paths that start with prefix wait d before they
// are answered, as a slow or stuck MUD server would; 0 ends it.
func (s *MUDServer) Hang(prefix string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.hang, prefix)
		return
	}
	s.hang[prefix] = d
}

// Delay makes the server answer requests for the path of rawURL (and its
// signature) only after d, as a slow MUD server would; 0 answers at once.
func (s *MUDServer) Delay(rawURL string, d time.Duration) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("delaying %s: %w", rawURL, err)
	}
	s.Hang(u.Path, d)
	return nil
}

// Requests lists the paths requested so far, in order.
func (s *MUDServer) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.hits...)
}

// Close stops the server: new connections to it are refused.
func (s *MUDServer) Close() { _ = s.srv.Close() }
