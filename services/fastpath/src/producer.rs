//! A Kafka producer on librdkafka's C API, for the transformer's outputs.
//!
//! confluent-kafka's `Producer.produce()` spends most of its ~1 µs a message parsing
//! its Python arguments; this producer is handed the fast path's values in Rust, so a
//! reading costs librdkafka's own work only. It runs on the librdkafka that
//! confluent-kafka loaded (see `rdkafka.rs`), is configured with the same properties
//! as a confluent-kafka producer, and raises confluent-kafka's exceptions, so the
//! Python service treats both alike.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::rdkafka::{self, Api, KafkaError, Vu, VuValue};

// How long a produce waits, serving delivery reports, before it tries a full local
// queue again.
const QUEUE_FULL_WAIT_MS: c_int = 10;

/// Delivery failures, counted by librdkafka's delivery report callback.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    last_error: AtomicI32,
}

/// Called by librdkafka from `poll` and `flush` for each failed message (the client
/// is configured with `delivery.report.only.error`). Messages purged by an aborted
/// transaction were thrown away on purpose: they are not failures.
unsafe extern "C" fn on_delivery(
    _client: *mut rdkafka::Client,
    message: *const rdkafka::Message,
    opaque: *mut c_void,
) {
    // SAFETY: librdkafka passes a valid message, and the opaque that `Producer::new`
    // set: its `Deliveries`, which outlive the client.
    let (message, deliveries) = unsafe { (&*message, &*(opaque as *const Deliveries)) };
    if !matches!(
        message.err,
        rdkafka::ERR_NO_ERROR | rdkafka::ERR_PURGE_QUEUE | rdkafka::ERR_PURGE_INFLIGHT
    ) {
        deliveries.failed.fetch_add(1, Ordering::Relaxed);
        deliveries.last_error.store(message.err, Ordering::Relaxed);
    }
}

/// librdkafka's handles are thread-safe: they may be used from any thread, and from
/// code that runs without the GIL.
struct Shared<T>(*mut T);
// Written out: derive would ask T to be Copy too.
impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Shared<T> {}
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    // A method, not the field: a closure then captures the Send wrapper.
    fn get(self) -> *mut T {
        self.0
    }
}

/// A Kafka producer on librdkafka (see the module's documentation).
#[pyclass(frozen, module = "energy_fastpath")]
pub struct Producer {
    api: &'static Api,
    client: Shared<rdkafka::Client>,
    // Boxed: librdkafka holds its address.
    deliveries: Box<Deliveries>,
    topics: Mutex<HashMap<String, Shared<rdkafka::Topic>>>,
}

/// confluent-kafka's `KafkaException(KafkaError(...))` for an error of librdkafka.
pub fn kafka_exception(py: Python<'_>, error: KafkaError) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let module = py.import("confluent_kafka")?;
        let flags = PyDict::new(py);
        flags.set_item("fatal", error.fatal)?;
        flags.set_item("retriable", error.retriable)?;
        flags.set_item("txn_requires_abort", error.txn_requires_abort)?;
        let kafka_error = module
            .getattr("KafkaError")?
            .call((error.code, &error.reason), Some(&flags))?;
        Ok(PyErr::from_value(
            module.getattr("KafkaException")?.call1((kafka_error,))?,
        ))
    })();
    made.unwrap_or_else(|failure| failure)
}

/// A timeout in seconds (confluent-kafka's unit) in librdkafka's milliseconds; a
/// negative one waits for ever.
fn milliseconds(seconds: f64) -> c_int {
    if seconds < 0.0 {
        -1
    } else {
        (seconds * 1000.0).min(f64::from(c_int::MAX)) as c_int
    }
}

/// A configuration value as librdkafka reads it.
fn config_text(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(flag) = value.extract::<bool>() {
        return Ok(if flag { "true" } else { "false" }.to_owned());
    }
    Ok(value.str()?.to_string())
}

fn c_string(text: &str) -> PyResult<CString> {
    CString::new(text).map_err(|_| PyValueError::new_err(format!("{text:?} contains NUL")))
}

/// A producer client with `settings`, whose failed deliveries are counted into
/// `deliveries`; else why librdkafka refused it.
fn make_client(
    api: &Api,
    settings: &[(String, String)],
    deliveries: &Deliveries,
) -> Result<*mut rdkafka::Client, String> {
    let mut errstr = [0 as c_char; 512];
    // SAFETY: a new configuration object, owned here until rd_kafka_new takes it.
    let conf = unsafe { (api.conf_new)() };
    let refused = |errstr: &[c_char]| {
        // SAFETY: the configuration is not used again; errstr holds librdkafka's
        // NUL-terminated message.
        unsafe {
            (api.conf_destroy)(conf);
            rdkafka::text(errstr.as_ptr())
        }
    };
    for (name, value) in settings {
        let (Ok(c_name), Ok(c_value)) = (CString::new(name.as_str()), CString::new(value.as_str()))
        else {
            return Err(format!("{name}={value:?} contains NUL"));
        };
        // SAFETY: a live configuration object and NUL-terminated strings.
        let result = unsafe {
            (api.conf_set)(
                conf,
                c_name.as_ptr(),
                c_value.as_ptr(),
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if result != rdkafka::CONF_OK {
            return Err(refused(&errstr));
        }
    }
    // SAFETY: the callback and its opaque, which the caller keeps until the client is
    // destroyed; rd_kafka_new takes the configuration when it succeeds.
    let client = unsafe {
        (api.conf_set_dr_msg_cb)(conf, on_delivery);
        (api.conf_set_opaque)(conf, std::ptr::from_ref(deliveries) as *mut c_void);
        (api.new)(rdkafka::PRODUCER, conf, errstr.as_mut_ptr(), errstr.len())
    };
    if client.is_null() {
        return Err(refused(&errstr));
    }
    Ok(client)
}

impl Producer {
    /// The handle of a topic, made on first use.
    fn topic(&self, py: Python<'_>, name: &str) -> PyResult<*mut rdkafka::Topic> {
        let mut topics = self.topics.lock().expect("the topic map is never poisoned");
        if let Some(topic) = topics.get(name) {
            return Ok(topic.get());
        }
        let c_name = c_string(name)?;
        // SAFETY: a live client and a NUL-terminated name; no topic configuration.
        let topic =
            unsafe { (self.api.topic_new)(self.client.0, c_name.as_ptr(), std::ptr::null_mut()) };
        if topic.is_null() {
            let reason = format!("cannot make a handle for topic {name:?}");
            return Err(kafka_exception(py, self.api.invalid_argument(reason)));
        }
        topics.insert(name.to_owned(), Shared(topic));
        Ok(topic)
    }

    /// Produce one message (librdkafka copies it), waiting while the local queue is
    /// full; a `timestamp` of 0 or less (a message without one) means now.
    pub fn send(
        &self,
        py: Python<'_>,
        topic: *mut rdkafka::Topic,
        value: Option<&[u8]>,
        key: Option<&[u8]>,
        timestamp: i64,
        headers: &[(&CStr, Option<&[u8]>)],
    ) -> PyResult<()> {
        let memory = |bytes: Option<&[u8]>| rdkafka::Memory {
            ptr: bytes.map_or(std::ptr::null(), |b| b.as_ptr().cast::<c_void>()),
            size: bytes.map_or(0, <[u8]>::len),
        };
        let message = [
            Vu {
                vtype: rdkafka::VTYPE_RKT,
                value: VuValue { rkt: topic },
            },
            Vu {
                vtype: rdkafka::VTYPE_PARTITION,
                value: VuValue {
                    i32: rdkafka::PARTITION_UA,
                },
            },
            Vu {
                vtype: rdkafka::VTYPE_MSGFLAGS,
                value: VuValue {
                    int: rdkafka::MSG_F_COPY,
                },
            },
            Vu {
                vtype: rdkafka::VTYPE_VALUE,
                value: VuValue {
                    memory: memory(value),
                },
            },
            Vu {
                vtype: rdkafka::VTYPE_KEY,
                value: VuValue {
                    memory: memory(key),
                },
            },
            Vu {
                vtype: rdkafka::VTYPE_TIMESTAMP,
                value: VuValue {
                    i64: timestamp.max(0),
                },
            },
        ];
        if headers.is_empty() {
            return self.produce_arguments(py, &message);
        }
        let mut arguments = message.to_vec();
        for (name, header_value) in headers {
            arguments.push(Vu {
                vtype: rdkafka::VTYPE_HEADER,
                value: VuValue {
                    header: rdkafka::Header {
                        name: name.as_ptr(),
                        value: header_value.map_or(std::ptr::null(), |v| v.as_ptr().cast()),
                        size: header_value.map_or(0, |v| v.len() as isize),
                    },
                },
            });
        }
        self.produce_arguments(py, &arguments)
    }

    /// rd_kafka_produceva, again after a wait while the local queue is full.
    fn produce_arguments(&self, py: Python<'_>, arguments: &[Vu]) -> PyResult<()> {
        loop {
            // SAFETY: a live client; the arguments point into memory that lives until
            // the call returns, and librdkafka copies what it keeps (MSG_F_COPY).
            let error = unsafe {
                self.api.take_error((self.api.produceva)(
                    self.client.0,
                    arguments.as_ptr(),
                    arguments.len(),
                ))
            };
            match error {
                None => return Ok(()),
                Some(error) if error.code == rdkafka::ERR_QUEUE_FULL => {
                    let (api, client) = (self.api, self.client);
                    // SAFETY: a live client.
                    py.detach(move || unsafe { (api.poll)(client.get(), QUEUE_FULL_WAIT_MS) });
                }
                Some(error) => return Err(kafka_exception(py, error)),
            }
        }
    }

    /// The handles of two topics, for a batch.
    pub fn topics(
        &self,
        py: Python<'_>,
        first: &str,
        second: &str,
    ) -> PyResult<(*mut rdkafka::Topic, *mut rdkafka::Topic)> {
        Ok((self.topic(py, first)?, self.topic(py, second)?))
    }

    /// Run a transaction call without the GIL; its error as a KafkaException.
    fn transaction_call(
        &self,
        py: Python<'_>,
        call: impl FnOnce(&Api, *mut rdkafka::Client) -> *mut rdkafka::Error + Send,
    ) -> PyResult<()> {
        let (api, client) = (self.api, self.client);
        // SAFETY: `call` gets a live client and returns an error object (or null) that
        // is handed over.
        let error = py.detach(move || unsafe { api.take_error(call(api, client.get())) });
        error.map_or(Ok(()), |error| Err(kafka_exception(py, error)))
    }
}

#[pymethods]
impl Producer {
    /// A producer with `config` (librdkafka's properties, as for confluent-kafka's
    /// Producer) on the librdkafka at `library`. Only failed deliveries are reported:
    /// see `delivery_failures`.
    #[new]
    fn new(py: Python<'_>, library: &str, config: &Bound<'_, PyDict>) -> PyResult<Self> {
        let api = rdkafka::api(library).map_err(pyo3::exceptions::PyImportError::new_err)?;
        let mut settings = vec![("delivery.report.only.error".to_owned(), "true".to_owned())];
        for (name, value) in config.iter() {
            settings.push((name.extract()?, config_text(&value)?));
        }
        let deliveries = Box::<Deliveries>::default();
        let client = make_client(api, &settings, &deliveries)
            .map_err(|reason| kafka_exception(py, api.invalid_argument(reason)))?;
        Ok(Producer {
            api,
            client: Shared(client),
            deliveries,
            topics: Mutex::new(HashMap::new()),
        })
    }

    /// Produce one message, waiting while the local queue is full. `headers` are
    /// `(name, value)` pairs, a value bytes, str or None.
    #[pyo3(signature = (topic, value, key=None, timestamp=0, headers=None))]
    fn produce(
        &self,
        py: Python<'_>,
        topic: &str,
        value: Option<&[u8]>,
        key: Option<&[u8]>,
        timestamp: i64,
        headers: Option<&Bound<'_, PyList>>,
    ) -> PyResult<()> {
        let topic = self.topic(py, topic)?;
        // The headers' values, kept alive for the call.
        let mut header_values: Vec<(CString, Option<Bound<'_, PyBytes>>)> = Vec::new();
        for header in headers.into_iter().flat_map(|list| list.iter()) {
            let (name, value): (String, Bound<'_, PyAny>) = header.extract()?;
            let bytes = if value.is_none() {
                None
            } else if let Ok(text) = value.cast::<PyString>() {
                Some(PyBytes::new(py, text.to_str()?.as_bytes()))
            } else {
                Some(value.cast_into::<PyBytes>()?)
            };
            header_values.push((c_string(&name)?, bytes));
        }
        let header_slices: Vec<(&CStr, Option<&[u8]>)> = header_values
            .iter()
            .map(|(name, bytes)| (name.as_c_str(), bytes.as_ref().map(|b| b.as_bytes())))
            .collect();
        self.send(py, topic, value, key, timestamp, &header_slices)
    }

    /// Serve delivery reports, waiting up to `timeout` seconds for one; how many
    /// were served.
    #[pyo3(signature = (timeout=0.0))]
    fn poll(&self, py: Python<'_>, timeout: f64) -> i32 {
        let (api, client) = (self.api, self.client);
        // SAFETY: a live client.
        py.detach(move || unsafe { (api.poll)(client.get(), milliseconds(timeout)) })
    }

    /// Wait up to `timeout` seconds until every message is delivered or failed; how
    /// many are still waiting.
    #[pyo3(signature = (timeout=-1.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> i32 {
        let (api, client) = (self.api, self.client);
        // SAFETY: a live client.
        py.detach(move || unsafe {
            (api.flush)(client.get(), milliseconds(timeout));
            (api.outq_len)(client.get())
        })
    }

    fn __len__(&self) -> usize {
        // SAFETY: a live client.
        let waiting = unsafe { (self.api.outq_len)(self.client.get()) };
        usize::try_from(waiting).unwrap_or(0)
    }

    /// Messages that librdkafka failed to deliver, since the producer was made.
    #[getter]
    fn delivery_failures(&self) -> u64 {
        self.deliveries.failed.load(Ordering::Relaxed)
    }

    /// Why the last failed message failed ("" when none has).
    #[getter]
    fn last_delivery_error(&self) -> String {
        match self.deliveries.last_error.load(Ordering::Relaxed) {
            rdkafka::ERR_NO_ERROR => String::new(),
            code => self.api.error_of_code(code).reason,
        }
    }

    #[pyo3(signature = (timeout=-1.0))]
    fn init_transactions(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let timeout = milliseconds(timeout);
        self.transaction_call(py, move |api, client| unsafe {
            (api.init_transactions)(client, timeout)
        })
    }

    fn begin_transaction(&self, py: Python<'_>) -> PyResult<()> {
        self.transaction_call(py, |api, client| unsafe { (api.begin_transaction)(client) })
    }

    /// Add the consumer's `offsets` (TopicPartitions: the next offset of each) to the
    /// transaction; `group_metadata` is the consumer's `consumer_group_metadata()`.
    #[pyo3(signature = (offsets, group_metadata, timeout=-1.0))]
    fn send_offsets_to_transaction(
        &self,
        py: Python<'_>,
        offsets: &Bound<'_, PyList>,
        group_metadata: &[u8],
        timeout: f64,
    ) -> PyResult<()> {
        let api = self.api;
        let mut metadata: *mut rdkafka::GroupMetadata = std::ptr::null_mut();
        // SAFETY: reads a copy of the serialized metadata into a new object.
        let error = unsafe {
            api.take_error((api.group_metadata_read)(
                &mut metadata,
                group_metadata.as_ptr().cast(),
                group_metadata.len(),
            ))
        };
        if let Some(error) = error {
            return Err(kafka_exception(py, error));
        }
        // SAFETY: a new list, filled with copies of the topics' names.
        let list = unsafe { (api.partition_list_new)(offsets.len() as c_int) };
        let filled = (|| -> PyResult<()> {
            for offset in offsets.iter() {
                let topic: String = offset.getattr("topic")?.extract()?;
                let partition: i32 = offset.getattr("partition")?.extract()?;
                let next: i64 = offset.getattr("offset")?.extract()?;
                let topic = c_string(&topic)?;
                unsafe {
                    (*(api.partition_list_add)(list, topic.as_ptr(), partition)).offset = next
                };
            }
            Ok(())
        })();
        let result = filled.and_then(|()| {
            let (list, metadata) = (Shared(list), Shared(metadata));
            let timeout = milliseconds(timeout);
            self.transaction_call(py, move |api, client| unsafe {
                (api.send_offsets_to_transaction)(client, list.get(), metadata.get(), timeout)
            })
        });
        // SAFETY: both were made above and are no longer used.
        unsafe {
            (api.partition_list_destroy)(list);
            (api.group_metadata_destroy)(metadata);
        }
        result
    }

    #[pyo3(signature = (timeout=-1.0))]
    fn commit_transaction(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let timeout = milliseconds(timeout);
        self.transaction_call(py, move |api, client| unsafe {
            (api.commit_transaction)(client, timeout)
        })
    }

    #[pyo3(signature = (timeout=-1.0))]
    fn abort_transaction(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let timeout = milliseconds(timeout);
        self.transaction_call(py, move |api, client| unsafe {
            (api.abort_transaction)(client, timeout)
        })
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let api = self.api;
        let topics: Vec<Shared<rdkafka::Topic>> = self
            .topics
            .get_mut()
            .map(|topics| topics.drain().map(|(_, topic)| topic).collect())
            .unwrap_or_default();
        let client = self.client;
        // Destroying a client waits for its threads: not with the GIL held.
        Python::attach(|py| {
            py.detach(move || unsafe {
                for topic in topics {
                    (api.topic_destroy)(topic.get());
                }
                (api.destroy)(client.get());
            });
        });
    }
}
