/* The native-payload decoder of a compiled contract, in C.
 *
 * Same contract as the Python function that trellis.contracts.compiled generates for
 * each contract version (see _NATIVE_TEMPLATE there), step for step: parse the payload
 * with the contract's msgspec decoder (types, unknown metrics, null and device-unit
 * ranges are checked by msgspec while it parses), take the timestamp, check it against
 * the receive time, then for each metric that is present normalise the value and build
 * one Reading. Anything it does not take returns None, and the caller's general path
 * names the reason. Python keeps the reference implementation; tests hold the two equal.
 *
 * Why C: the Python version spends two thirds of its time in interpreter glue around
 * the C parse (attribute loads, comparisons, appends), which no rewrite in Python removes.
 *
 * Built with -ffp-contract=off: `v * scale + offset` must round twice, as Python does,
 * never as one fused multiply-add, or a value could normalise differently here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <structmember.h>

/* A compiled spec: what the generated Python function has as globals. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *parse;           /* the contract's Decoder.decode */
    PyObject *payload_type;    /* the payload struct type (a list of them is also valid) */
    PyObject *values_type;     /* the struct type of its "values" */
    Py_ssize_t ts_at, seq_at, values_at; /* slot offsets in a payload struct */
    PyObject *invalid;         /* tuple of exception types meaning "not ours": return None */
    PyObject *parse_timestamp; /* trellis.core.clock.parse_timestamp */
    PyObject *reading_type;    /* trellis.core.types.Reading */
    PyObject *good;            /* Quality.GOOD */
    PyObject *unset;           /* msgspec.UNSET */
    Py_ssize_t n;              /* metrics */
    Py_ssize_t *slots;         /* each metric's slot offset in a values struct */
    PyObject **metrics;        /* metric names */
    PyObject **units;          /* stored units (str or None) */
    double *scales, *offsets;  /* stored = value * scale + offset */
    char *identity;            /* scale 1, offset 0: the value is stored as parsed */
    char *checked;             /* range not enforced by msgspec: checked here */
    double *minimums, *maximums;
} Spec;

static PyObject *ts_attr, *seq_attr, *values_attr;

static void
Spec_clear_arrays(Spec *self)
{
    for (Py_ssize_t i = 0; i < self->n; i++) {
        if (self->metrics) Py_XDECREF(self->metrics[i]);
        if (self->units) Py_XDECREF(self->units[i]);
    }
    PyMem_Free(self->slots);
    PyMem_Free(self->metrics);
    PyMem_Free(self->units);
    PyMem_Free(self->scales);
    PyMem_Free(self->offsets);
    PyMem_Free(self->identity);
    PyMem_Free(self->checked);
    PyMem_Free(self->minimums);
    PyMem_Free(self->maximums);
    self->slots = NULL;
    self->metrics = self->units = NULL;
    self->scales = self->offsets = self->minimums = self->maximums = NULL;
    self->identity = self->checked = NULL;
    self->n = 0;
}

static void
Spec_dealloc(Spec *self)
{
    Py_XDECREF(self->parse);
    Py_XDECREF(self->payload_type);
    Py_XDECREF(self->values_type);
    Py_XDECREF(self->invalid);
    Py_XDECREF(self->parse_timestamp);
    Py_XDECREF(self->reading_type);
    Py_XDECREF(self->good);
    Py_XDECREF(self->unset);
    Spec_clear_arrays(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The offset of field ``name``'s slot in instances of ``type`` (a msgspec struct type:
 * each field is a member descriptor of an object slot), or -1 with an error set. */
static Py_ssize_t
slot_of(PyObject *type, PyObject *name)
{
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "a struct type is expected");
        return -1;
    }
    /* On the class, a slot's attribute is its member descriptor (looked up through the
     * bases too, where an inherited field's slot lives at the same offset). */
    PyObject *descr = PyObject_GetAttr(type, name);
    if (descr == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%R has no field %R", type, name);
        }
        return -1;
    }
    Py_ssize_t offset = -1;
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "field %R of %R is not a slot", name, type);
    } else {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX && member->type != T_OBJECT)
            PyErr_Format(PyExc_TypeError, "field %R of %R is not an object slot", name, type);
        else
            offset = member->offset;
    }
    Py_DECREF(descr);
    return offset;
}

/* A field of a struct instance whose type was checked: a borrowed reference, or NULL
 * when the slot is empty. */
static inline PyObject *
slot(PyObject *obj, Py_ssize_t offset)
{
    return *(PyObject **)((char *)obj + offset);
}

/* Spec(parse, payload_type, values_type, invalid, parse_timestamp, reading_type, good,
 * unset, metrics) where metrics is a sequence of (field, metric, unit, scale, offset, identity, minimum,
 * maximum) with minimum/maximum None when msgspec already enforces the range. */
static int
Spec_init(Spec *self, PyObject *args, PyObject *kwds)
{
    PyObject *parse, *payload_type, *values_type, *invalid, *parse_timestamp, *reading_type,
        *good, *unset, *metrics;
    static char *kwlist[] = {"parse", "payload_type", "values_type", "invalid",
                             "parse_timestamp", "reading_type", "good", "unset", "metrics",
                             NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO!OOOOO", kwlist, &parse, &payload_type,
                                     &values_type, &PyTuple_Type, &invalid, &parse_timestamp,
                                     &reading_type, &good, &unset, &metrics))
        return -1;
    if (self->parse != NULL) {
        PyErr_SetString(PyExc_TypeError, "Spec is initialised once");
        return -1;
    }
    Py_ssize_t ts_at = slot_of(payload_type, ts_attr);
    Py_ssize_t seq_at = ts_at < 0 ? -1 : slot_of(payload_type, seq_attr);
    Py_ssize_t values_at = seq_at < 0 ? -1 : slot_of(payload_type, values_attr);
    if (values_at < 0) return -1;
    PyObject *seq = PySequence_Fast(metrics, "metrics must be a sequence");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->slots = PyMem_Calloc(n ? n : 1, sizeof(Py_ssize_t));
    self->metrics = PyMem_Calloc(n ? n : 1, sizeof(PyObject *));
    self->units = PyMem_Calloc(n ? n : 1, sizeof(PyObject *));
    self->scales = PyMem_Calloc(n ? n : 1, sizeof(double));
    self->offsets = PyMem_Calloc(n ? n : 1, sizeof(double));
    self->identity = PyMem_Calloc(n ? n : 1, 1);
    self->checked = PyMem_Calloc(n ? n : 1, 1);
    self->minimums = PyMem_Calloc(n ? n : 1, sizeof(double));
    self->maximums = PyMem_Calloc(n ? n : 1, sizeof(double));
    if (!self->slots || !self->metrics || !self->units || !self->scales || !self->offsets ||
        !self->identity || !self->checked || !self->minimums || !self->maximums) {
        Py_DECREF(seq);
        Spec_clear_arrays(self);
        PyErr_NoMemory();
        return -1;
    }
    self->n = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *attr, *metric, *unit, *minimum, *maximum;
        double scale, offset;
        int identity;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "UUOddpOO;a metric of a Spec",
                              &attr, &metric, &unit, &scale, &offset, &identity, &minimum,
                              &maximum))
            goto fail;
        if (unit != Py_None && !PyUnicode_Check(unit)) {
            PyErr_SetString(PyExc_TypeError, "a unit must be str or None");
            goto fail;
        }
        if ((minimum == Py_None) != (maximum == Py_None)) {
            PyErr_SetString(PyExc_TypeError, "minimum and maximum are both None or both set");
            goto fail;
        }
        self->slots[i] = slot_of(values_type, attr);
        if (self->slots[i] < 0) goto fail;
        self->metrics[i] = Py_NewRef(metric);
        self->units[i] = Py_NewRef(unit);
        self->scales[i] = scale;
        self->offsets[i] = offset;
        self->identity[i] = (char)identity;
        self->checked[i] = minimum != Py_None;
        if (self->checked[i]) {
            self->minimums[i] = PyFloat_AsDouble(minimum);
            self->maximums[i] = PyFloat_AsDouble(maximum);
            if (PyErr_Occurred()) goto fail;
        }
    }
    Py_DECREF(seq);
    self->parse = Py_NewRef(parse);
    self->payload_type = Py_NewRef(payload_type);
    self->values_type = Py_NewRef(values_type);
    self->ts_at = ts_at;
    self->seq_at = seq_at;
    self->values_at = values_at;
    self->invalid = Py_NewRef(invalid);
    self->parse_timestamp = Py_NewRef(parse_timestamp);
    self->reading_type = Py_NewRef(reading_type);
    self->good = Py_NewRef(good);
    self->unset = Py_NewRef(unset);
    return 0;
fail:
    Py_DECREF(seq);
    Spec_clear_arrays(self);
    return -1;
}

/* The sample's timestamp as a new reference once checked against the receive time; NULL
 * without an error set when the sample is refused, NULL with an error set on an
 * unexpected failure. */
static PyObject *
sample_ts(Spec *spec, PyObject *sample, PyObject *received, long long received_ms,
          long long oldest, long long newest)
{
    PyObject *ts = slot(sample, spec->ts_at);
    if (ts == NULL) return NULL;
    ts = Py_NewRef(ts == Py_None ? received : ts);
    int overflow = 0;
    long long value = 0;
    if (PyLong_CheckExact(ts)) value = PyLong_AsLongLongAndOverflow(ts, &overflow);
    if (!PyLong_CheckExact(ts) || overflow < 0 || (overflow == 0 && value < 1000000000000LL)) {
        PyObject *parsed = PyObject_CallOneArg(spec->parse_timestamp, ts);
        Py_DECREF(ts);
        if (parsed == NULL) {
            /* its ValueError means a bad timestamp: the sample is refused */
            if (PyErr_ExceptionMatches(PyExc_ValueError)) PyErr_Clear();
            return NULL;
        }
        ts = parsed;
        if (!PyLong_Check(ts)) {
            Py_DECREF(ts);
            PyErr_SetString(PyExc_TypeError, "parse_timestamp must return an int");
            return NULL;
        }
        value = PyLong_AsLongLongAndOverflow(ts, &overflow);
    }
    if (value == -1 && PyErr_Occurred()) {
        Py_DECREF(ts);
        return NULL;
    }
    long long skew;
    /* A timestamp beyond 64 bits, or whose distance to the receive time is, is out of
     * any bound the caller can give. */
    if (overflow != 0 || __builtin_sub_overflow(value, received_ms, &skew) || skew < oldest ||
        skew > newest) {
        Py_DECREF(ts);
        return NULL;
    }
    return ts;
}

/* Append the readings of one sample to out; 1 if any, 0 if none or refused (no error
 * set), -1 on an error. */
static int
add_sample(Spec *spec, PyObject *sample, PyObject *out, PyObject *const *args,
           long long received_ms, long long oldest, long long newest)
{
    /* args: payload, received, tenant, device, given_seq, message_id, oldest, newest */
    PyObject *ts = sample_ts(spec, sample, args[1], received_ms, oldest, newest);
    if (ts == NULL) return PyErr_Occurred() ? -1 : 0;
    int result = 0;
    PyObject *seq = slot(sample, spec->seq_at);
    PyObject *values = slot(sample, spec->values_at);
    if (seq == NULL || values == NULL || Py_TYPE(values) != (PyTypeObject *)spec->values_type)
        goto done;
    seq = seq == Py_None ? args[4] : seq;
    Py_ssize_t before = PyList_GET_SIZE(out);
    for (Py_ssize_t i = 0; i < spec->n; i++) {
        PyObject *value = slot(values, spec->slots[i]);
        if (value == spec->unset) continue;
        if (value == NULL || !PyFloat_CheckExact(value)) goto done; /* only floats expected */
        Py_INCREF(value);
        if (!spec->identity[i] || spec->checked[i]) {
            double v = PyFloat_AS_DOUBLE(value);
            if (!spec->identity[i]) v = v * spec->scales[i] + spec->offsets[i];
            if (spec->checked[i] && !(spec->minimums[i] <= v && v <= spec->maximums[i])) {
                Py_DECREF(value);
                goto done;
            }
            if (!spec->identity[i]) {
                Py_DECREF(value);
                value = PyFloat_FromDouble(v);
                if (value == NULL) {
                    result = -1;
                    goto done;
                }
            }
        }
        PyObject *fields[9] = {args[2], args[3], spec->metrics[i], ts, value,
                               spec->units[i], spec->good, seq, args[5]};
        PyObject *reading = PyObject_Vectorcall(spec->reading_type, fields, 9, NULL);
        Py_DECREF(value);
        if (reading == NULL) {
            result = -1;
            goto done;
        }
        int appended = PyList_Append(out, reading);
        Py_DECREF(reading);
        if (appended < 0) {
            result = -1;
            goto done;
        }
    }
    result = PyList_GET_SIZE(out) > before;
done:
    Py_DECREF(ts);
    return result;
}

/* spec(payload, received, tenant, device, given_seq, message_id, oldest, newest) */
static PyObject *
Spec_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Spec *spec = (Spec *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 8 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError,
                        "decode(payload, received, tenant, device, given_seq, message_id, "
                        "oldest, newest) takes 8 positional arguments");
        return NULL;
    }
    if (spec->parse == NULL) {
        PyErr_SetString(PyExc_TypeError, "Spec is not initialised");
        return NULL;
    }
    /* Bounds beyond 64 bits saturate (a limit that large bounds nothing); a receive time
     * beyond them is left to the general path. */
    int over_received, over_oldest, over_newest;
    long long received = PyLong_AsLongLongAndOverflow(args[1], &over_received);
    long long oldest = PyLong_AsLongLongAndOverflow(args[6], &over_oldest);
    long long newest = PyLong_AsLongLongAndOverflow(args[7], &over_newest);
    if ((received == -1 || oldest == -1 || newest == -1) && PyErr_Occurred()) return NULL;
    if (over_received) Py_RETURN_NONE;
    if (over_oldest) oldest = over_oldest < 0 ? LLONG_MIN : LLONG_MAX;
    if (over_newest) newest = over_newest < 0 ? LLONG_MIN : LLONG_MAX;
    PyObject *decoded = PyObject_CallOneArg(spec->parse, args[0]);
    if (decoded == NULL) {
        if (PyErr_ExceptionMatches(spec->invalid)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        Py_DECREF(decoded);
        return NULL;
    }
    int ok;
    if (Py_TYPE(decoded) == (PyTypeObject *)spec->payload_type) {
        ok = add_sample(spec, decoded, out, args, received, oldest, newest);
    } else if (PyList_CheckExact(decoded)) {
        ok = 1;
        for (Py_ssize_t i = 0; ok == 1 && i < PyList_GET_SIZE(decoded); i++) {
            PyObject *sample = PyList_GET_ITEM(decoded, i);
            ok = Py_TYPE(sample) == (PyTypeObject *)spec->payload_type
                     ? add_sample(spec, sample, out, args, received, oldest, newest)
                     : 0;
        }
        if (ok == 1 && PyList_GET_SIZE(out) == 0) ok = 0;
    } else {
        ok = 0;
    }
    Py_DECREF(decoded);
    if (ok == 1) return out;
    Py_DECREF(out);
    if (ok < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Spec_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Spec *self = (Spec *)type->tp_alloc(type, 0);
    if (self != NULL) self->vectorcall = Spec_vectorcall;
    return (PyObject *)self;
}

static PyTypeObject SpecType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "trellis.contracts._native.Spec",
    .tp_doc = PyDoc_STR("A compiled contract's native-payload decoder; call it like the "
                        "generated Python decode function."),
    .tp_basicsize = sizeof(Spec),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Spec_new,
    .tp_init = (initproc)Spec_init,
    .tp_dealloc = (destructor)Spec_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Spec, vectorcall),
};

static int
native_exec(PyObject *module)
{
    ts_attr = PyUnicode_InternFromString("ts");
    seq_attr = PyUnicode_InternFromString("seq");
    values_attr = PyUnicode_InternFromString("values");
    if (!ts_attr || !seq_attr || !values_attr) return -1;
    if (PyType_Ready(&SpecType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "Spec", (PyObject *)&SpecType) < 0) return -1;
    PyObject *all = Py_BuildValue("[s]", "Spec");
    if (all == NULL) return -1;
    int added = PyModule_AddObjectRef(module, "__all__", all);
    Py_DECREF(all);
    return added;
}

static PyModuleDef_Slot native_slots[] = {
    {Py_mod_exec, native_exec},
    {0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "trellis.contracts._native",
    .m_doc = PyDoc_STR("The C decoder of compiled data contracts (see compiled.py)."),
    .m_size = 0,
    .m_slots = native_slots,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
