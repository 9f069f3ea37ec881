package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// errInterrupted: kioskd was restarted (killed) during the payment.
var errInterrupted = errors.New("kioskd restarted during the payment")

// till drives kioskd as a shop does: the till's API (ECR) creates the
// payment, the shopper inserts the card and types the CAN on the screen's
// API, the simulated camera shows the card holder.
type till struct {
	http, ecr, tokenFile string
	proc                 *supervisor
	client               http.Client
}

// payment is the till's view of a payment (firmware/ecr).
type payment struct {
	ID     string `json:"id"`
	Status string `json:"status"` // pending, approved, declined
	State  string `json:"state"`
}

func (p payment) decided() bool { return p.Status == "approved" || p.Status == "declined" }

type sessionStatus struct {
	State   string `json:"state"`
	Request *struct {
		MerchantRef string `json:"merchant_ref"`
	} `json:"request"`
}

// health is kioskd's /healthz (firmware/daemon.Health).
type health struct {
	Status     string `json:"status"`
	Components map[string]struct {
		State string `json:"state"`
	} `json:"components"`
}

// waitReady waits until kioskd answers /healthz and the session API.
func (t *till) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		var s sessionStatus
		var h health
		if last = t.get(ctx, "http://"+t.http+"/api/session", &s); last == nil && s.State == "idle" {
			// A payment needs the camera and the reader; the hub may be
			// down (the broker is struck too): payments then go offline.
			if last = t.get(ctx, "http://"+t.http+"/healthz", &h); last == nil &&
				h.Components["camera"].State == "ok" && h.Components["cardreader"].State == "ok" {
				if _, err := os.Stat(t.tokenFile); err == nil {
					return nil
				}
			}
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
	if last == nil {
		last = errors.New("session not idle")
	}
	return last
}

// waitHub waits until kioskd (after a restart) is connected to the hub.
func (t *till) waitHub(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		var h health
		if err := t.get(ctx, "http://"+t.http+"/healthz", &h); err == nil && h.Components["hub"].State == "ok" {
			return nil
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	return errors.New("hub not connected")
}

// pay runs one payment to its end and returns the till's status.
func (t *till) pay(ctx context.Context, ref string) (string, error) {
	if err := t.waitReady(ctx, 60*time.Second); err != nil {
		return "", fmt.Errorf("kioskd not ready: %w", err)
	}
	gen := t.proc.generation()
	step := func(err error) error {
		if t.proc.generation() != gen {
			return errInterrupted
		}
		return err
	}
	body := fmt.Sprintf(`{"amount_minor":2350,"currency":"CNY","merchant_ref":%q}`, ref)
	if code, b, err := t.ecrDo(ctx, "POST", "/v1/payments", body); err != nil || code != http.StatusCreated {
		return "", step(fmt.Errorf("create payment: %d %s %v", code, b, err))
	}
	if err := t.waitState(ctx, gen, 30*time.Second, "insert_card"); err != nil {
		return "", step(err)
	}
	if err := t.post(ctx, "/api/sim/card", `{"action":"insert"}`); err != nil {
		return "", step(err)
	}
	if err := t.waitState(ctx, gen, 30*time.Second, "enter_password"); err != nil {
		return "", step(err)
	}
	if err := t.post(ctx, "/api/session/password", `{"kind":"can","digits":"123456"}`); err != nil {
		return "", step(err)
	}
	if err := t.waitState(ctx, gen, 150*time.Second, "result", "remove_card", "idle"); err != nil {
		return "", step(err)
	}
	p, err := t.lookup(ctx, ref)
	_ = t.post(ctx, "/api/sim/card", `{"action":"remove"}`)
	if err != nil {
		return "", step(err)
	}
	return p.Status, step(nil)
}

// lookup asks the till's API what became of a payment.
func (t *till) lookup(ctx context.Context, ref string) (payment, error) {
	var p payment
	code, b, err := t.ecrDo(ctx, "GET", "/v1/payments/"+ref, "")
	if err != nil {
		return p, err
	}
	if code != http.StatusOK {
		return p, fmt.Errorf("payment %s: %d %s", ref, code, b)
	}
	return p, json.Unmarshal(b, &p)
}

func (t *till) waitState(ctx context.Context, gen int, limit time.Duration, states ...string) error {
	deadline := time.Now().Add(limit)
	var s sessionStatus
	for time.Now().Before(deadline) {
		if t.proc.generation() != gen {
			return errInterrupted
		}
		if err := t.get(ctx, "http://"+t.http+"/api/session", &s); err == nil {
			for _, want := range states {
				if s.State == want {
					return nil
				}
			}
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("session %q, waited %s for %s", s.State, limit, strings.Join(states, " or "))
}

func (t *till) get(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (t *till) post(ctx context.Context, path, body string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+t.http+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// ecrDo is a call to the till's API with the token kioskd wrote.
func (t *till) ecrDo(ctx context.Context, method, path, body string) (int, []byte, error) {
	token, err := os.ReadFile(t.tokenFile)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+t.ecr+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// freeAddr is a loopback address with a port free right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
