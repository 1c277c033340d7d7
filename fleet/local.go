package fleet

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The fleet client's own bbolt file holds what must survive a restart or a
// partition: the writes not yet in etcd (in order), the revision the watch
// has reached, and the modification revision of every shared decision this
// gateway knows (its base for compare-and-swap, and what a full resync
// compares against to find deletions).
var (
	bucketQueue  = []byte("queue")
	bucketMirror = []byte("mirror")
	bucketMeta   = []byte("meta")
	keyRev       = []byte("rev")
)

// op is what a queued write does.
type op string

const (
	opPut       op = "put"        // a shared decision, compare-and-swap on BaseRev
	opDelete    op = "delete"     // a shared decision, compare-and-swap on BaseRev
	opDevice    op = "device"     // this gateway's device summary (its own key: last write wins)
	opDeviceDel op = "device-del" // removal of a device summary
)

// Write is one queued change, persisted until etcd has it or has refused it.
type Write struct {
	Op    op     `json:"op"`
	Kind  Kind   `json:"kind,omitempty"`
	Key   string `json:"key"`
	Value []byte `json:"value,omitempty"`
	// BaseRev is the modification revision of the decision the write
	// replaces, as this gateway knew it when the write was made; 0 means
	// the decision did not exist. etcd applies the write only if the key
	// is still at that revision.
	BaseRev  int64     `json:"base_rev"`
	Queued   time.Time `json:"queued"`
	Sequence uint64    `json:"-"`
}

type local struct{ db *bolt.DB }

func openLocal(path string) (*local, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("fleet queue %s is locked by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening fleet queue %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketQueue, bucketMirror, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("preparing fleet queue %s: %w", path, err)
	}
	return &local{db: db}, nil
}

func (l *local) close() error { return l.db.Close() }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// enqueue appends w; it is on disk when enqueue returns.
func (l *local) enqueue(w Write) error {
	return l.db.Update(func(tx *bolt.Tx) error { return putQueued(tx, w) })
}

// putQueued appends w to the queue within tx.
func putQueued(tx *bolt.Tx, w Write) error {
	b := tx.Bucket(bucketQueue)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	buf, err := json.Marshal(w)
	if err != nil {
		return err
	}
	return b.Put(u64(seq), buf)
}

// pending returns the queued writes in order.
func (l *local) pending() ([]Write, error) {
	var out []Write
	err := l.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQueue).ForEach(func(k, v []byte) error {
			var w Write
			if err := json.Unmarshal(v, &w); err != nil {
				return fmt.Errorf("queued write %x is damaged: %w", k, err)
			}
			w.Sequence = binary.BigEndian.Uint64(k)
			out = append(out, w)
			return nil
		})
	})
	return out, err
}

// done removes a queued write.
func (l *local) done(seq uint64) error {
	return l.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketQueue).Delete(u64(seq)) })
}

func (l *local) queueLen() int {
	n := 0
	_ = l.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketQueue).Stats().KeyN; return nil })
	return n
}

// known returns the modification revision this gateway knows for an etcd
// key (0: absent).
func (l *local) known(etcdKey string) int64 {
	var rev int64
	_ = l.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMirror).Get([]byte(etcdKey)); len(v) == 8 {
			rev = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return rev
}

// mirrorUpdate is one change to the known revisions.
type mirrorUpdate struct {
	key     string
	modRev  int64
	deleted bool
}

// record stores known revisions and the watch revision in one transaction.
func (l *local) record(ups []mirrorUpdate, rev int64) error {
	return l.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMirror)
		for _, u := range ups {
			var err error
			if u.deleted {
				err = m.Delete([]byte(u.key))
			} else {
				err = m.Put([]byte(u.key), u64(uint64(u.modRev)))
			}
			if err != nil {
				return err
			}
		}
		if rev > 0 {
			return tx.Bucket(bucketMeta).Put(keyRev, u64(uint64(rev)))
		}
		return nil
	})
}

// knownKeys lists every etcd key of the mirror.
func (l *local) knownKeys() (map[string]int64, error) {
	out := map[string]int64{}
	err := l.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMirror).ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				out[string(k)] = int64(binary.BigEndian.Uint64(v))
			}
			return nil
		})
	})
	return out, err
}

// watchRev is the last revision the watch delivered (0: never).
func (l *local) watchRev() int64 {
	var rev int64
	_ = l.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyRev); len(v) == 8 {
			rev = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return rev
}
