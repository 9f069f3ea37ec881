// Package operatorapi is a small client of kioskhub's operator API
// (docs/mqtt.md, "Operator API") for the fleet and update demos: JSON
// calls with the operator's bearer token, and waits for a job to finish.
package operatorapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Client calls the operator API at Base (http://host:port).
type Client struct {
	Base, Token string
}

// Call sends body (if any) as JSON and decodes a 2xx answer into out.
func (c *Client) Call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// Execution is one device's run of a job.
type Execution struct {
	Device string `json:"device"`
	Status string `json:"status"`
	Reason string `json:"reason"`
	Result string `json:"result"`
}

// Wait polls job id until every execution finished and returns them.
func (c *Client) Wait(ctx context.Context, id string) ([]Execution, error) {
	var st struct {
		Summary struct {
			Done bool `json:"done"`
		} `json:"summary"`
		Executions []Execution `json:"executions"`
	}
	err := WaitFor(ctx, "job "+id, func() bool { return c.Call(ctx, "GET", "/fleet/jobs/"+id, nil, &st) == nil && st.Summary.Done })
	return st.Executions, err
}

// WaitFor polls cond every 200 ms until it holds or ctx ends.
func WaitFor(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}
