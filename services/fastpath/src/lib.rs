//! The transformer's hot path, compiled: for a batch of consumed messages, each
//! message that is a plain valid reading is flagged and produced (with its key and
//! timestamp) to the processed topic, and to the alarm topic when high, through the
//! producer of `producer.rs`; the batch's valid readings are counted per (area,
//! timestamp), and the offsets to commit worked out.
//!
//! It accepts a strict subset of what the reading schema (`energy_pipeline.schema`)
//! accepts, and for that subset gives the schema's result. Everything else is left to
//! the Python path, which has the last word and names the reason of every rejection:
//! consumer errors, invalid input, and valid readings of a rarer form (escapes in a
//! string, nested values, an `isHighConsumption` of their own, a timestamp written
//! `-00:00`, ...). The tests hold the two to agreement.

mod producer;
mod rdkafka;

use std::collections::HashMap;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use producer::Producer;

const TRUE_TAIL: &[u8] = b",\"isHighConsumption\":true}";
const FALSE_TAIL: &[u8] = b",\"isHighConsumption\":false}";

/// The fields of a plain reading, borrowed from the message.
struct Reading<'a> {
    area: &'a str,
    energy_consumption: f64,
    timestamp: &'a str,
}

/// A cursor over one message that reads the plain form of JSON: strings without
/// escapes, numbers, `true`, `false` and `null`, in one flat object. Anything else
/// (including everything that is not JSON) stops it with None.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.at += 1)
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = self.text[self.at..].starts_with(word);
        if found {
            self.at += word.len();
        }
        found
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        loop {
            match self.peek()? {
                b'"' => break,
                // Escapes are left to the Python path; control characters are not JSON.
                b'\\' | 0x00..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        self.at += 1;
        Some(&self.text[start..self.at - 1])
    }

    /// A JSON number (RFC 8259's grammar exactly), as the nearest f64.
    fn number(&mut self) -> Option<f64> {
        let start = self.at;
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        // Rust's parse rounds correctly, as Python's does (too large: infinity).
        self.text[start..self.at].parse().ok()
    }

    /// The value of a member this path does not read.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b't' | b'f' | b'n' => {
                (self.eat_word("true") || self.eat_word("false") || self.eat_word("null"))
                    .then_some(())
            }
            _ => self.number().map(drop),
        }
    }
}

/// Store a member's value; None if the member was already there (a duplicate is left
/// to the Python path).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

/// The reading in `text` if it is one flat JSON object of the plain form whose
/// closing brace is its last byte; the fields are not checked yet.
fn scan(text: &str) -> Option<(Reading<'_>, &str, Option<&str>)> {
    let mut scanner = Scanner { text, at: 0 };
    let (mut sensor_id, mut area, mut consumption, mut timestamp) = (None, None, None, None);
    let mut reading_id: Option<Option<&str>> = None;
    scanner.skip_whitespace();
    scanner.eat(b'{')?;
    loop {
        scanner.skip_whitespace();
        let name = scanner.string()?;
        scanner.skip_whitespace();
        scanner.eat(b':')?;
        scanner.skip_whitespace();
        match name {
            "sensorId" => once(&mut sensor_id, scanner.string()?)?,
            "area" => once(&mut area, scanner.string()?)?,
            "energyConsumption" => once(&mut consumption, scanner.number()?)?,
            "timestamp" => once(&mut timestamp, scanner.string()?)?,
            "readingId" => {
                let id = if scanner.eat_word("null") {
                    None
                } else {
                    Some(scanner.string()?)
                };
                once(&mut reading_id, id)?
            }
            "isHighConsumption" => return None, // replaced, not appended: the Python path
            _ => scanner.skip_value()?,
        }
        scanner.skip_whitespace();
        if scanner.eat(b',').is_none() {
            break;
        }
    }
    scanner.eat(b'}')?;
    if scanner.at != text.len() {
        return None;
    }
    let reading = Reading {
        area: area?,
        energy_consumption: consumption?,
        timestamp: timestamp?,
    };
    Some((reading, sensor_id?, reading_id.flatten()))
}

/// Readings, energy and high readings of one (area, timestamp).
struct Group {
    area: String,
    timestamp: String,
    readings: u64,
    energy: f64,
    high: u64,
}

/// The groups of a batch. Consecutive readings mostly share area and timestamp (the
/// producer writes an area's sensors of one round together): the last group is
/// looked at first.
#[derive(Default)]
struct Groups {
    groups: Vec<Group>,
    // area -> timestamp -> index in `groups`: looked up by &str, allocated when new.
    index: HashMap<String, HashMap<String, usize>>,
    last: usize,
}

impl Groups {
    fn of(&mut self, area: &str, timestamp: &str) -> &mut Group {
        let last_matches = self
            .groups
            .get(self.last)
            .is_some_and(|group| group.area == area && group.timestamp == timestamp);
        if !last_matches {
            let by_timestamp = match self.index.get_mut(area) {
                Some(by_timestamp) => by_timestamp,
                None => self.index.entry(area.to_owned()).or_default(),
            };
            self.last = match by_timestamp.get(timestamp) {
                Some(&found) => found,
                None => {
                    by_timestamp.insert(timestamp.to_owned(), self.groups.len());
                    self.groups.push(Group {
                        area: area.to_owned(),
                        timestamp: timestamp.to_owned(),
                        readings: 0,
                        energy: 0.0,
                        high: 0,
                    });
                    self.groups.len() - 1
                }
            };
        }
        &mut self.groups[self.last]
    }
}

/// A method of the messages' class, looked up once per batch: calling it with the
/// message is cheaper than looking it up by name on each message.
struct Method<'py> {
    class: Bound<'py, PyType>,
    function: Bound<'py, PyAny>,
}

impl<'py> Method<'py> {
    fn of(class: &Bound<'py, PyType>, name: &Bound<'py, PyString>) -> PyResult<Self> {
        Ok(Method {
            class: class.clone(),
            function: class.getattr(name)?,
        })
    }

    fn call(&self, message: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if !message.get_type().is(&self.class) {
            return Err(PyTypeError::new_err(
                "the messages of a batch must be of one class",
            ));
        }
        self.function.call1((message,))
    }
}

/// What `FastPath.accept` says of a plain valid reading: (processed value, high, area,
/// timestamp, energy consumption).
type Accepted<'py> = (Bound<'py, PyBytes>, bool, String, String, f64);

#[pyclass(frozen, module = "energy_fastpath")]
struct FastPath {
    default_threshold: f64,
    area_thresholds: HashMap<String, f64>,
    max_message_bytes: usize,
    max_string_length: usize,
}

impl FastPath {
    /// The reading in `raw`, if it is a valid one of the plain form.
    fn accept_reading<'a>(&self, raw: &'a [u8]) -> Option<Reading<'a>> {
        if raw.len() > self.max_message_bytes || raw.last() != Some(&b'}') {
            return None;
        }
        // The whole message must be UTF-8, not only the fields that are read.
        let (reading, sensor_id, reading_id) = scan(std::str::from_utf8(raw).ok()?)?;
        let valid = self.is_text(sensor_id)
            && self.is_text(reading.area)
            && self.is_text(reading.timestamp)
            && reading_id.is_none_or(|id| self.is_text(id))
            && reading.energy_consumption >= 0.0
            && reading.energy_consumption.is_finite()
            && is_utc_timestamp(reading.timestamp);
        valid.then_some(reading)
    }

    /// Non-empty and, counted in bytes, within the schema's limit (which counts
    /// characters: a string longer in bytes is left to the Python path).
    fn is_text(&self, text: &str) -> bool {
        !text.is_empty() && text.len() <= self.max_string_length
    }

    /// Consumption strictly above the area's threshold.
    fn is_high(&self, reading: &Reading<'_>) -> bool {
        let threshold = self
            .area_thresholds
            .get(reading.area)
            .copied()
            .unwrap_or(self.default_threshold);
        reading.energy_consumption > threshold
    }
}

#[pymethods]
impl FastPath {
    #[new]
    fn new(
        default_threshold: f64,
        area_thresholds: HashMap<String, f64>,
        max_message_bytes: usize,
        max_string_length: usize,
    ) -> Self {
        FastPath {
            default_threshold,
            area_thresholds,
            max_message_bytes,
            max_string_length,
        }
    }

    /// `(processed value, high, area, timestamp, energy consumption)` if `raw` is a
    /// plain valid reading, else None (the Python path decides).
    fn accept<'py>(&self, py: Python<'py>, raw: &[u8]) -> PyResult<Option<Accepted<'py>>> {
        let Some(reading) = self.accept_reading(raw) else {
            return Ok(None);
        };
        let high = self.is_high(&reading);
        let mut value = Vec::new();
        processed_value(raw, high, &mut value);
        Ok(Some((
            PyBytes::new(py, &value),
            high,
            reading.area.to_owned(),
            reading.timestamp.to_owned(),
            reading.energy_consumption,
        )))
    }

    /// Transform a list of consumed messages of one class (with `error()`, `value()`,
    /// `key()`, `timestamp()`, `partition()` and `offset()`), in order: each plain
    /// valid reading is produced through `producer` to `processed_topic` with
    /// `isHighConsumption`, and to `alerts_topic` too when high, with its key and
    /// timestamp; every other message (consumer errors too) is passed to `other`.
    /// Returns `(groups, next_offsets)`: `(area, timestamp) -> [readings, energy, high
    /// readings]` of the readings produced here, and each partition's offset after its
    /// last message (consumer errors are not messages).
    fn transform<'py>(
        &self,
        messages: &Bound<'py, PyList>,
        producer: &Producer,
        processed_topic: &str,
        alerts_topic: &str,
        other: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let py = messages.py();
        let mut groups = Groups::default();
        // (partition, offset after its last message): a batch holds few partitions.
        let mut next_offsets: Vec<(i64, i64)> = Vec::new();
        // The partition of the messages seen last, and the last of them: a batch holds
        // runs of messages of one partition (librdkafka hands out a fetch at a time),
        // so the offset is read once per run, of its last message.
        let mut run: Option<(i64, Bound<'py, PyAny>)> = None;
        let mut value_buffer: Vec<u8> = Vec::with_capacity(512);
        if !messages.is_empty() {
            let (processed, alerts) = producer.topics(py, processed_topic, alerts_topic)?;
            let class = messages.get_item(0)?.get_type();
            let error_of = Method::of(&class, intern!(py, "error"))?;
            let value_of = Method::of(&class, intern!(py, "value"))?;
            let key_of = Method::of(&class, intern!(py, "key"))?;
            let timestamp_of = Method::of(&class, intern!(py, "timestamp"))?;
            let partition_of = Method::of(&class, intern!(py, "partition"))?;
            let offset_of = Method::of(&class, intern!(py, "offset"))?;
            for message in messages.iter() {
                if !error_of.call(&message)?.is_none() {
                    other.call1((&message,))?;
                    continue;
                }
                let partition: i64 = partition_of.call(&message)?.extract()?;
                if let Some((previous, last)) = run.take_if(|(p, _)| *p != partition) {
                    record_next_offset(&mut next_offsets, previous, &offset_of.call(&last)?)?;
                }
                run = Some((partition, message.clone()));
                let value = value_of.call(&message)?;
                let reading = value.cast::<PyBytes>().ok().and_then(|bytes| {
                    Some((bytes.as_bytes(), self.accept_reading(bytes.as_bytes())?))
                });
                let Some((raw, reading)) = reading else {
                    other.call1((&message,))?;
                    continue;
                };
                let high = self.is_high(&reading);
                processed_value(raw, high, &mut value_buffer);
                let key = key_of.call(&message)?;
                let key = key.cast::<PyBytes>().ok().map(|k| k.as_bytes());
                // (type, milliseconds)
                let timestamp: i64 = timestamp_of.call(&message)?.get_item(1)?.extract()?;
                producer.send(py, processed, Some(&value_buffer), key, timestamp, &[])?;
                if high {
                    producer.send(py, alerts, Some(&value_buffer), key, timestamp, &[])?;
                }
                let group = groups.of(reading.area, reading.timestamp);
                group.readings += 1;
                group.energy += reading.energy_consumption;
                group.high += u64::from(high);
            }
            if let Some((partition, last)) = run {
                record_next_offset(&mut next_offsets, partition, &offset_of.call(&last)?)?;
            }
        }
        let counted = PyDict::new(py);
        for group in groups.groups {
            let counts = (group.readings, group.energy, group.high).into_pyobject(py)?;
            counted.set_item(
                (group.area, group.timestamp),
                PyList::new(py, counts.iter())?,
            )?;
        }
        let offsets = PyDict::new(py);
        for (partition, next) in next_offsets {
            offsets.set_item(partition, next)?;
        }
        PyTuple::new(py, [counted.into_any(), offsets.into_any()])
    }
}

fn record_next_offset(
    found: &mut Vec<(i64, i64)>,
    partition: i64,
    offset: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let next = offset.extract::<i64>()? + 1;
    match found.iter_mut().find(|(known, _)| *known == partition) {
        Some(entry) => entry.1 = next,
        None => found.push((partition, next)),
    }
    Ok(())
}

/// The input with `"isHighConsumption"` appended before its closing brace, written
/// into `into`.
fn processed_value(raw: &[u8], high: bool, into: &mut Vec<u8>) {
    let tail = if high { TRUE_TAIL } else { FALSE_TAIL };
    into.clear();
    into.extend_from_slice(&raw[..raw.len() - 1]);
    into.extend_from_slice(tail);
}

fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+00:00)`, a real date and time: the forms of UTC
/// that Python's `datetime.fromisoformat` reads, less the rarer ones.
fn is_utc_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let fields = [
        &b[0..4],
        &b[5..7],
        &b[8..10],
        &b[11..13],
        &b[14..16],
        &b[17..19],
    ]
    .map(number);
    let [Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)] = fields
    else {
        return false;
    };
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return false;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=6).contains(&digits) {
            return false;
        }
        rest = &rest[1 + digits..];
    }
    rest == b"Z" || rest == b"+00:00"
}

#[pymodule]
fn energy_fastpath(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<FastPath>()?;
    module.add_class::<Producer>()
}
