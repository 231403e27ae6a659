//! The part of librdkafka's C API that the producer uses, resolved at run time in the
//! librdkafka that confluent-kafka has loaded into the process: one librdkafka per
//! process (the consumer's), and nothing of ours to compile or link against it.
//!
//! The declarations follow `rdkafka.h` (librdkafka 2.x, whose ABI is stable).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use libloading::Library;

/// Opaque librdkafka objects.
pub enum Client {}
pub enum Conf {}
pub enum Topic {}
pub enum Error {}
pub enum GroupMetadata {}

pub const PRODUCER: c_int = 0;
pub const CONF_OK: c_int = 0;
pub const PARTITION_UA: i32 = -1;
pub const MSG_F_COPY: c_int = 0x2;

pub const ERR_NO_ERROR: c_int = 0;
pub const ERR_QUEUE_FULL: c_int = -184;
pub const ERR_INVALID_ARG: c_int = -186;
pub const ERR_PURGE_QUEUE: c_int = -152;
pub const ERR_PURGE_INFLIGHT: c_int = -151;

// rd_kafka_vtype_t
pub const VTYPE_RKT: c_int = 2;
pub const VTYPE_PARTITION: c_int = 3;
pub const VTYPE_VALUE: c_int = 4;
pub const VTYPE_KEY: c_int = 5;
pub const VTYPE_MSGFLAGS: c_int = 7;
pub const VTYPE_TIMESTAMP: c_int = 8;
pub const VTYPE_HEADER: c_int = 9;

/// rd_kafka_message_t
#[repr(C)]
pub struct Message {
    pub err: c_int,
    pub rkt: *mut Topic,
    pub partition: i32,
    pub payload: *mut c_void,
    pub len: usize,
    pub key: *mut c_void,
    pub key_len: usize,
    pub offset: i64,
    pub private: *mut c_void,
}

/// rd_kafka_topic_partition_t
#[repr(C)]
pub struct TopicPartition {
    pub topic: *mut c_char,
    pub partition: i32,
    pub offset: i64,
    pub metadata: *mut c_void,
    pub metadata_size: usize,
    pub opaque: *mut c_void,
    pub err: c_int,
    pub private: *mut c_void,
}

/// rd_kafka_topic_partition_list_t
#[repr(C)]
pub struct TopicPartitionList {
    pub cnt: c_int,
    pub size: c_int,
    pub elems: *mut TopicPartition,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Memory {
    pub ptr: *const c_void,
    pub size: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Header {
    pub name: *const c_char,
    pub value: *const c_void,
    pub size: isize,
}

/// The value of an rd_kafka_vu_t (64 bytes, as the header pads it).
#[repr(C)]
#[derive(Clone, Copy)]
pub union VuValue {
    pub rkt: *mut Topic,
    pub int: c_int,
    pub i32: i32,
    pub i64: i64,
    pub memory: Memory,
    pub header: Header,
    pub pad: [u8; 64],
}

/// rd_kafka_vu_t: one argument of rd_kafka_produceva().
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Vu {
    pub vtype: c_int,
    pub value: VuValue,
}

// rd_kafka_produceva reads an array of these: the size must be the C one.
const _: () = assert!(std::mem::size_of::<Vu>() == 72);

pub type DeliveryCallback = unsafe extern "C" fn(*mut Client, *const Message, *mut c_void);

/// The functions, looked up once.
pub struct Api {
    // Keeps the library loaded for as long as the functions are used (for ever).
    _library: Library,
    pub version: unsafe extern "C" fn() -> c_int,
    pub err2str: unsafe extern "C" fn(c_int) -> *const c_char,
    pub conf_new: unsafe extern "C" fn() -> *mut Conf,
    pub conf_destroy: unsafe extern "C" fn(*mut Conf),
    pub conf_set:
        unsafe extern "C" fn(*mut Conf, *const c_char, *const c_char, *mut c_char, usize) -> c_int,
    pub conf_set_dr_msg_cb: unsafe extern "C" fn(*mut Conf, DeliveryCallback),
    pub conf_set_opaque: unsafe extern "C" fn(*mut Conf, *mut c_void),
    pub new: unsafe extern "C" fn(c_int, *mut Conf, *mut c_char, usize) -> *mut Client,
    pub destroy: unsafe extern "C" fn(*mut Client),
    pub topic_new: unsafe extern "C" fn(*mut Client, *const c_char, *mut c_void) -> *mut Topic,
    pub topic_destroy: unsafe extern "C" fn(*mut Topic),
    pub produceva: unsafe extern "C" fn(*mut Client, *const Vu, usize) -> *mut Error,
    pub poll: unsafe extern "C" fn(*mut Client, c_int) -> c_int,
    pub flush: unsafe extern "C" fn(*mut Client, c_int) -> c_int,
    pub outq_len: unsafe extern "C" fn(*mut Client) -> c_int,
    pub init_transactions: unsafe extern "C" fn(*mut Client, c_int) -> *mut Error,
    pub begin_transaction: unsafe extern "C" fn(*mut Client) -> *mut Error,
    pub send_offsets_to_transaction: unsafe extern "C" fn(
        *mut Client,
        *const TopicPartitionList,
        *const GroupMetadata,
        c_int,
    ) -> *mut Error,
    pub commit_transaction: unsafe extern "C" fn(*mut Client, c_int) -> *mut Error,
    pub abort_transaction: unsafe extern "C" fn(*mut Client, c_int) -> *mut Error,
    pub group_metadata_read:
        unsafe extern "C" fn(*mut *mut GroupMetadata, *const c_void, usize) -> *mut Error,
    pub group_metadata_destroy: unsafe extern "C" fn(*mut GroupMetadata),
    pub partition_list_new: unsafe extern "C" fn(c_int) -> *mut TopicPartitionList,
    pub partition_list_add:
        unsafe extern "C" fn(*mut TopicPartitionList, *const c_char, i32) -> *mut TopicPartition,
    pub partition_list_destroy: unsafe extern "C" fn(*mut TopicPartitionList),
    pub error_code: unsafe extern "C" fn(*const Error) -> c_int,
    pub error_string: unsafe extern "C" fn(*const Error) -> *const c_char,
    pub error_is_fatal: unsafe extern "C" fn(*const Error) -> c_int,
    pub error_is_retriable: unsafe extern "C" fn(*const Error) -> c_int,
    pub error_txn_requires_abort: unsafe extern "C" fn(*const Error) -> c_int,
    pub error_destroy: unsafe extern "C" fn(*mut Error),
}

/// The oldest librdkafka with everything used here (rd_kafka_produceva and the
/// transactional API date from 1.6; confluent-kafka 2.6 ships 2.6).
pub const MIN_VERSION: c_int = 0x0206_0000;

static API: OnceLock<(String, Api)> = OnceLock::new();

/// The API of the librdkafka at `path`, loaded the first time; later calls must name
/// the same library.
pub fn api(path: &str) -> Result<&'static Api, String> {
    if API.get().is_none() {
        let loaded = load(path)?;
        let _ = API.set((path.to_owned(), loaded));
    }
    let (loaded_from, api) = API.get().expect("set above");
    if loaded_from != path {
        return Err(format!(
            "librdkafka is already loaded from {loaded_from}, not {path}"
        ));
    }
    Ok(api)
}

fn load(path: &str) -> Result<Api, String> {
    // SAFETY: librdkafka's initialisers have no requirements; it is normally loaded
    // already (by confluent-kafka), and then this only takes another reference.
    let library = unsafe { Library::new(path) }.map_err(|e| format!("loading {path}: {e}"))?;
    macro_rules! function {
        ($name:literal) => {
            // SAFETY: the type of each field is the function's C signature in rdkafka.h.
            *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("{path} has no {}: {e}", $name))?
        };
    }
    let api = Api {
        version: function!("rd_kafka_version"),
        err2str: function!("rd_kafka_err2str"),
        conf_new: function!("rd_kafka_conf_new"),
        conf_destroy: function!("rd_kafka_conf_destroy"),
        conf_set: function!("rd_kafka_conf_set"),
        conf_set_dr_msg_cb: function!("rd_kafka_conf_set_dr_msg_cb"),
        conf_set_opaque: function!("rd_kafka_conf_set_opaque"),
        new: function!("rd_kafka_new"),
        destroy: function!("rd_kafka_destroy"),
        topic_new: function!("rd_kafka_topic_new"),
        topic_destroy: function!("rd_kafka_topic_destroy"),
        produceva: function!("rd_kafka_produceva"),
        poll: function!("rd_kafka_poll"),
        flush: function!("rd_kafka_flush"),
        outq_len: function!("rd_kafka_outq_len"),
        init_transactions: function!("rd_kafka_init_transactions"),
        begin_transaction: function!("rd_kafka_begin_transaction"),
        send_offsets_to_transaction: function!("rd_kafka_send_offsets_to_transaction"),
        commit_transaction: function!("rd_kafka_commit_transaction"),
        abort_transaction: function!("rd_kafka_abort_transaction"),
        group_metadata_read: function!("rd_kafka_consumer_group_metadata_read"),
        group_metadata_destroy: function!("rd_kafka_consumer_group_metadata_destroy"),
        partition_list_new: function!("rd_kafka_topic_partition_list_new"),
        partition_list_add: function!("rd_kafka_topic_partition_list_add"),
        partition_list_destroy: function!("rd_kafka_topic_partition_list_destroy"),
        error_code: function!("rd_kafka_error_code"),
        error_string: function!("rd_kafka_error_string"),
        error_is_fatal: function!("rd_kafka_error_is_fatal"),
        error_is_retriable: function!("rd_kafka_error_is_retriable"),
        error_txn_requires_abort: function!("rd_kafka_error_txn_requires_abort"),
        error_destroy: function!("rd_kafka_error_destroy"),
        _library: library,
    };
    // SAFETY: rd_kafka_version takes nothing and returns an int.
    let version = unsafe { (api.version)() };
    if version < MIN_VERSION {
        return Err(format!(
            "{path} is librdkafka {version:#x}; the producer needs {MIN_VERSION:#x} or newer"
        ));
    }
    Ok(api)
}

/// An error of librdkafka, in plain data.
#[derive(Debug, Clone)]
pub struct KafkaError {
    pub code: c_int,
    pub reason: String,
    pub fatal: bool,
    pub retriable: bool,
    pub txn_requires_abort: bool,
}

impl Api {
    /// The error an rd_kafka_error_t says (None for no error), which is destroyed.
    ///
    /// # Safety
    /// `error` is null or an error object that librdkafka handed over.
    pub unsafe fn take_error(&self, error: *mut Error) -> Option<KafkaError> {
        if error.is_null() {
            return None;
        }
        let taken = KafkaError {
            code: (self.error_code)(error),
            reason: text((self.error_string)(error)),
            fatal: (self.error_is_fatal)(error) != 0,
            retriable: (self.error_is_retriable)(error) != 0,
            txn_requires_abort: (self.error_txn_requires_abort)(error) != 0,
        };
        (self.error_destroy)(error);
        Some(taken)
    }

    /// An invalid argument (a setting, a topic name), and why.
    pub fn invalid_argument(&self, reason: String) -> KafkaError {
        KafkaError {
            reason,
            ..self.error_of_code(ERR_INVALID_ARG)
        }
    }

    /// An error of a bare code, described as librdkafka describes it.
    pub fn error_of_code(&self, code: c_int) -> KafkaError {
        KafkaError {
            code,
            // SAFETY: rd_kafka_err2str returns a static string for any code.
            reason: unsafe { text((self.err2str)(code)) },
            fatal: false,
            retriable: false,
            txn_requires_abort: false,
        }
    }
}

/// A C string of librdkafka's, copied.
///
/// # Safety
/// `pointer` is null or a NUL-terminated string.
pub unsafe fn text(pointer: *const c_char) -> String {
    if pointer.is_null() {
        return String::new();
    }
    CStr::from_ptr(pointer).to_string_lossy().into_owned()
}
