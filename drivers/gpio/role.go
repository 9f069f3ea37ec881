package gpio

// Role names a kiosk function wired to one GPIO line.
type Role string

// Output roles.
const (
	LEDGreen Role = "led_green"
	LEDRed   Role = "led_red"
	LEDAmber Role = "led_amber"
	Buzzer   Role = "buzzer"
	IR       Role = "ir_illuminator"
	Lock     Role = "lock"
)

// Input roles.
const (
	Presence      Role = "presence"
	Tamper        Role = "tamper"
	ServiceButton Role = "service_button"
	// SpeechKey turns speech output on: a tactile key, or the headset
	// jack's detect switch (EN 301 549 §5.1.3.1).
	SpeechKey Role = "speech_key"
)

// Roles returns every known role: outputs first, then inputs, in a fixed
// order that States and Status also use.
func Roles() []Role {
	return []Role{LEDGreen, LEDRed, LEDAmber, Buzzer, IR, Lock, Presence, Tamper, ServiceButton, SpeechKey}
}

// IsOutput reports whether r is a known output role.
func (r Role) IsOutput() bool {
	switch r {
	case LEDGreen, LEDRed, LEDAmber, Buzzer, IR, Lock:
		return true
	}
	return false
}

// IsInput reports whether r is a known input role.
func (r Role) IsInput() bool {
	switch r {
	case Presence, Tamper, ServiceButton, SpeechKey:
		return true
	}
	return false
}

// known reports whether r is any known role.
func (r Role) known() bool { return r.IsOutput() || r.IsInput() }
