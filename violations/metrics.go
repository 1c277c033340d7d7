package violations

import (
	"bufio"
	"io"
	"strconv"
)

// WriteMetrics writes the Table's counters in the Prometheus text format,
// for the owner's metrics handler to append:
//
//	mud_violation_drops_total{mac,direction}   Counters' top MetricDevices devices
//	                                            (device="ADDR" instead of mac when
//	                                            the MAC is not known)
//	mud_violation_drops_all_total{direction}   all devices
//	mud_violation_parse_errors_total{reason}   one series per Err* name
//	mud_violation_records                      records held
//	mud_violation_evicted_total, mud_violation_overruns_total,
//	mud_violation_updates_deferred_total
//
// At most 2·MetricDevices + 2 + len(error names) + 4 series. Label values
// are MACs, addresses and fixed names, formatted here: nothing from a
// packet is written as it came.
func (t *Table) WriteMetrics(w io.Writer) error {
	cs, s := t.Counters(), t.Stats()
	b := bufio.NewWriter(w)
	head := func(name, typ, help string) {
		b.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
	}
	line := func(name, labels string, v uint64) {
		b.WriteString(name)
		if labels != "" {
			b.WriteString("{" + labels + "}")
		}
		b.WriteString(" " + strconv.FormatUint(v, 10) + "\n")
	}
	head("mud_violation_drops_total", "counter", "Logged drops (default deny, source guard) of the devices with most drops, by direction.")
	var all []Counter
	for _, c := range cs {
		switch {
		case c.MAC != nil:
			line("mud_violation_drops_total", `mac="`+c.MAC.String()+`",direction="`+c.Direction.String()+`"`, c.Drops)
		case c.DeviceAddr.IsValid():
			line("mud_violation_drops_total", `device="`+c.DeviceAddr.String()+`",direction="`+c.Direction.String()+`"`, c.Drops)
		default:
			all = append(all, c)
		}
	}
	head("mud_violation_drops_all_total", "counter", "Logged drops of all devices, by direction.")
	for _, c := range all {
		line("mud_violation_drops_all_total", `direction="`+c.Direction.String()+`"`, c.Drops)
	}
	head("mud_violation_parse_errors_total", "counter", "NFLOG messages that could not be parsed, by reason.")
	for _, n := range errorNames {
		line("mud_violation_parse_errors_total", `reason="`+n+`"`, s.Errors[n])
	}
	head("mud_violation_records", "gauge", "Violation records held.")
	line("mud_violation_records", "", uint64(s.Records))
	head("mud_violation_evicted_total", "counter", "Violation records evicted to stay within the bounds.")
	line("mud_violation_evicted_total", "", s.Evicted)
	head("mud_violation_overruns_total", "counter", "Times the kernel dropped NFLOG messages for want of socket buffer.")
	line("mud_violation_overruns_total", "", s.Overruns)
	head("mud_violation_updates_deferred_total", "counter", "Violation updates held back by a device's rate limit or a full channel.")
	line("mud_violation_updates_deferred_total", "", s.Deferred)
	return b.Flush()
}
