package fleet

import (
	"context"
	"encoding/json"
	"fmt"

	"kiosk/firmware/jobwire"
)

// Desired/reported configuration (docs/mqtt.md, "Configuration"): a
// desired document is a version and operator settings; it reaches kiosks
// as a set_configuration job; what each kiosk applied is the result of its
// execution.

// ConfigDoc is a set_configuration job's document.
type ConfigDoc struct {
	Version  int                        `json:"version"`
	Settings map[string]json.RawMessage `json:"settings"`
}

// Reported is what one kiosk last said about its configuration.
type Reported struct {
	Version  int    `json:"version"`
	Hash     string `json:"hash,omitempty"`
	JobID    string `json:"job_id"`
	Rejected string `json:"rejected,omitempty"` // the last refusal, when newer than the applied version
}

// ConfigState is the desired document and what the kiosks reported.
type ConfigState struct {
	Desired      *ConfigDoc          `json:"desired,omitempty"`
	DesiredJobID string              `json:"desired_job_id,omitempty"`
	Reported     map[string]Reported `json:"reported"`
}

// SetConfig makes the next desired version (one above the highest any
// set_configuration job carried) and rolls it out as a job to sp's
// targets.
func (s *Service) SetConfig(ctx context.Context, sp Spec, settings map[string]json.RawMessage) (Job, int, error) {
	if len(settings) == 0 {
		return Job{}, 0, fmt.Errorf("fleet: no settings")
	}
	st, err := s.ConfigState(ctx)
	if err != nil {
		return Job{}, 0, err
	}
	v := 1
	if st.Desired != nil {
		v = st.Desired.Version + 1
	}
	b, err := json.Marshal(ConfigDoc{Version: v, Settings: settings})
	if err != nil {
		return Job{}, 0, err
	}
	sp.Kind, sp.Doc = jobwire.KindSetConfig, string(b)
	j, err := s.Create(ctx, sp)
	return j, v, err
}

// ConfigState reads the desired document (the newest version of all
// set_configuration jobs) and each kiosk's last applied version.
func (s *Service) ConfigState(ctx context.Context) (ConfigState, error) {
	st := ConfigState{Reported: map[string]Reported{}}
	js, err := s.o.Store.Jobs(ctx)
	if err != nil {
		return st, err
	}
	for _, j := range js {
		if j.Kind != jobwire.KindSetConfig {
			continue
		}
		var doc ConfigDoc
		if json.Unmarshal([]byte(j.Doc), &doc) != nil {
			continue
		}
		if st.Desired == nil || doc.Version > st.Desired.Version {
			d := doc
			st.Desired, st.DesiredJobID = &d, j.ID
		}
		es, err := s.o.Store.Executions(ctx, j.ID)
		if err != nil {
			return st, err
		}
		for _, e := range es {
			r := st.Reported[e.Device]
			switch e.Status {
			case jobwire.StatusSucceeded:
				var res struct {
					Version int    `json:"version"`
					Hash    string `json:"hash"`
				}
				if json.Unmarshal([]byte(e.Result), &res) == nil && res.Version >= r.Version {
					r = Reported{Version: res.Version, Hash: res.Hash, JobID: j.ID}
				}
			case jobwire.StatusRejected, jobwire.StatusFailed:
				if doc.Version > r.Version {
					r.Rejected = fmt.Sprintf("v%d: %s", doc.Version, e.Reason)
				}
			default:
				continue
			}
			st.Reported[e.Device] = r
		}
	}
	return st, nil
}
