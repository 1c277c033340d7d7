package violations

import (
	"encoding/binary"
	"runtime"
	"testing"
)

// BenchmarkParseAndAdd is the reader's work per NFLOG message: parse a
// captured message (out4-tcp) and aggregate it. "same" updates one record;
// "distinct" gives each message another destination address and port, so
// that every one inserts a record and, once the device holds
// MaxPerDevice, evicts one.
func BenchmarkParseAndAdd(b *testing.B) {
	for _, distinct := range []bool{false, true} {
		name := map[bool]string{false: "same", true: "distinct"}[distinct]
		b.Run(name, func(b *testing.B) {
			msg := readMessage(b, "out4-tcp")
			ip := len(msg) - 60 // the payload: IPv4 header, then TCP
			tab := NewTable(Config{})
			var p Parser
			var d Drop
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if distinct {
					binary.BigEndian.PutUint16(msg[ip+18:], uint16(i))
					binary.BigEndian.PutUint16(msg[ip+22:], uint16(i>>16))
				}
				if err := p.ParseMessage(msg, &d); err != nil {
					b.Fatal(err)
				}
				tab.Add(&d)
				drainN(tab, -1)
			}
		})
	}
}

// BenchmarkTableMemory measures the heap a full Table holds: DefaultMaxRecords
// records of 64 devices (DefaultMaxPerDevice each), reported per record.
func BenchmarkTableMemory(b *testing.B) {
	var per float64
	for b.Loop() {
		before := heap()
		tab := NewTable(Config{})
		for dev := range DefaultMaxRecords / DefaultMaxPerDevice {
			for i := range DefaultMaxPerDevice {
				tab.Add(drop(dev, i, 443))
			}
		}
		drainN(tab, -1)
		after := heap()
		if s := tab.Stats(); s.Records != DefaultMaxRecords {
			b.Fatalf("%d records, want %d", s.Records, DefaultMaxRecords)
		}
		per = float64(after-before) / DefaultMaxRecords
		runtime.KeepAlive(tab)
	}
	b.ReportMetric(per, "heap-B/record")
}
