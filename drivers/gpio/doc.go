// Package gpio drives the kiosk's discrete I/O: status LEDs, buzzer, IR
// illuminator and lock (outputs) and the presence sensor, enclosure tamper
// switch and service button (inputs).
//
// Two backends share one implementation, [Board], which works over any set of
// periph.io gpio.PinIO values:
//
//   - [OpenHost] uses the Linux GPIO character device (periph host/v3,
//     package gpioioctl). Lines are looked up by the name the GPIO chip gives
//     them (e.g. "GPIO17" on a Raspberry Pi), or as "<chip>:<offset>" where
//     chip is a chip name ("gpiochip0") or label ("pinctrl-bcm2711") for lines
//     the chip leaves unnamed (periph registers named lines only).
//   - [NewSim] uses periph's gpiotest fakes, so tests and the demo page can
//     flip inputs ([Sim.SetInput], [Sim.Bounce]) exactly as hardware would:
//     a level change plus an edge event.
//
// # Logical levels and wiring conventions
//
// Callers deal only in logical "active" levels; PinConfig.ActiveLow maps them
// to electrical levels. Meaning of active per role:
//
//	led_*, buzzer, ir_illuminator  on
//	lock                           actuator energised (released/unlocked for a
//	                               fail-secure strike); inactive = locked
//	presence                       a person is in front of the kiosk
//	tamper                         enclosure open or tamper loop broken
//	service_button                 pressed
//
// Typical wiring, and the config that goes with it:
//
//	tamper: normally-closed switch to GND, pull-up. Enclosure shut → switch
//	        closed → line low; opened (or wire cut) → pull-up → high.
//	        ActiveLow=false, Pull="up". A cut wire therefore reads as tamper.
//	service_button: normally-open push button to GND, pull-up. Pressed → low.
//	        ActiveLow=true, Pull="up".
//	presence: PIR/ToF module with a push-pull active-high output.
//	        ActiveLow=false, Pull="down" (so an unplugged sensor reads absent).
//	outputs: active-high through a transistor/relay driver; ActiveLow=true
//	        for sink-driven LEDs or low-triggered relay boards.
//
// Outputs are driven to their inactive level when the board is opened and
// again by Close, so a crash-restart leaves LEDs off and the lock locked.
//
// # Inputs, edges and debounce
//
// [Board.Run] watches every input with edge detection (WaitForEdge with a
// bounded timeout, so cancellation is noticed within ~100ms) and reports a
// change only after the level has been stable for Config.Debounce: a burst of
// bounces yields one event with the final level, or none if the line settles
// back where it was. A line whose edge detection fails is switched to polling
// and Status reports "degraded"; edge detection is re-probed periodically.
package gpio
