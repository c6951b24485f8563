"""OCPP 1.6 Smart Charging on the charge point: the charging profiles the
central system installs (SetChargingProfile, ClearChargingProfile) and
their composite limit (OCPP 1.6 section 3.13; GetCompositeSchedule).
Pure logic: times are seconds since 2020 (evse/ocpp.py UNIX_2020: small
ints on 32-bit ports), given by the caller. Imported by
evse/ocpp.py, itself loaded only with the OCPP backend.

    sc = Profiles()
    status = sc.set(connector, cs_profile, tx_id)  # "Accepted" or "Rejected"
    sc.limit_a(t, tx_start, tx_id, phases)         # the composite at t, None: no limit
    sc.schedule(t0, seconds, tx_start, tx_id, phases, default_a)  # [(start s, A)]

At a time t each purpose's profile that is valid and running with the
highest stackLevel applies; TxProfile (this transaction's) overrides
TxDefaultProfile, and ChargePointMaxProfile caps both. A limit in W is
taken as A at 230 V times the installation's phases (those the charger
supplies; a period's numberPhases is checked, not used: see _amps).
"""
from micropython import const

from evse.ocpp import UNIX_2020, parse_time

_MAX_PROFILES = const(8)  # MaxChargingProfilesInstalled
MAX_PERIODS = const(24)  # ChargingScheduleMaxPeriods
MAX_STACK = const(8)  # ChargeProfileMaxStackLevel
_VOLTS = const(230)
_DAY_S = const(86400)
PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")
_KINDS = const(("Absolute", "Recurring", "Relative"))

# A profile: a list of these fields.
_ID = const(0)
_STACK = const(1)
_PURPOSE = const(2)  # index in PURPOSES
_TX = const(3)  # its transactionId (TxProfile), else None
_KIND = const(4)  # index in _KINDS
_PERIOD_S = const(5)  # Recurring: a day or a week; else 0
_FROM = const(6)  # validFrom, validTo, startSchedule: s since 2020 or None
_TO = const(7)
_START = const(8)
_DURATION = const(9)  # s, None: open-ended
_WATTS = const(10)  # the limits are in W
_PERIODS = const(11)  # ((startPeriod s, limit, phases or 0), ...)


class Invalid(ValueError):
    """A field of the right type but an impossible value: PropertyConstraintViolation."""


def _int(d, k, lo=0, need=True):
    x = d.get(k)
    if x is None and not need:
        return None
    if not isinstance(x, int) or isinstance(x, bool):
        raise TypeError(k)
    if x < lo:
        raise Invalid(k)
    return x


def _time(d, k):
    x = d.get(k)
    if x is None:
        return None
    if not isinstance(x, str):
        raise TypeError(k)
    t = parse_time(x)
    if t is None:
        raise Invalid(k)
    return t - UNIX_2020


def parse(cs):
    """A profile (the list above) from csChargingProfiles. Raises TypeError
    (a field of the wrong type or missing), Invalid (an impossible value),
    or returns None for a profile this charge point rejects (a schedule that
    does not start at 0, unsorted or too many periods)."""
    if not isinstance(cs, dict):
        raise TypeError("csChargingProfiles")
    pid = _int(cs, "chargingProfileId")
    stack = _int(cs, "stackLevel")
    purpose = cs.get("chargingProfilePurpose")
    kind = cs.get("chargingProfileKind")
    if not isinstance(purpose, str) or not isinstance(kind, str):
        raise TypeError("chargingProfilePurpose")
    if purpose not in PURPOSES or kind not in _KINDS:
        raise Invalid("chargingProfilePurpose")
    tx = _int(cs, "transactionId", 0, False)
    sch = cs.get("chargingSchedule")
    if not isinstance(sch, dict):
        raise TypeError("chargingSchedule")
    unit = sch.get("chargingRateUnit")
    if not isinstance(unit, str):
        raise TypeError("chargingRateUnit")
    if unit not in ("A", "W"):
        raise Invalid("chargingRateUnit")
    rows = sch.get("chargingSchedulePeriod")
    if not isinstance(rows, list):
        raise TypeError("chargingSchedulePeriod")
    periods = []
    for r in rows:
        if not isinstance(r, dict):
            raise TypeError("chargingSchedulePeriod")
        lim = r.get("limit")
        if not (isinstance(lim, int) or isinstance(lim, float)) or isinstance(lim, bool):
            raise TypeError("limit")
        if lim < 0:
            raise Invalid("limit")
        ph = _int(r, "numberPhases", 1, False)
        if ph is not None and ph > 3:
            raise Invalid("numberPhases")
        periods.append((_int(r, "startPeriod"), lim, ph or 0))
    period_s = 0
    if kind == "Recurring":
        rk = cs.get("recurrencyKind")
        if rk not in ("Daily", "Weekly"):
            return None
        period_s = _DAY_S if rk == "Daily" else 7 * _DAY_S
    p = [pid, stack, PURPOSES.index(purpose), tx, _KINDS.index(kind), period_s,
         _time(cs, "validFrom"), _time(cs, "validTo"), _time(sch, "startSchedule"),
         _int(sch, "duration", 0, False), unit == "W", tuple(periods)]
    if not periods or len(periods) > MAX_PERIODS or periods[0][0] != 0 or stack > MAX_STACK:
        return None
    for i in range(1, len(periods)):
        if periods[i][0] <= periods[i - 1][0]:
            return None
    if kind != "Relative" and p[_START] is None:
        return None  # Absolute and Recurring need their startSchedule
    return p


def _start(p, t, tx_start):
    """When the run of profile `p` that covers t began, or None."""
    k = p[_KIND]
    if k == 2:  # Relative: from the transaction's start
        return tx_start
    s = p[_START]
    if k == 1 and t >= s:  # Recurring: the latest recurrence
        s += (t - s) // p[_PERIOD_S] * p[_PERIOD_S]
    return s


def _amps(p, lim, phases):
    # W over the phases the charger supplies (the installation's): it does not
    # switch phases for a profile, so a period's numberPhases 1 on a three-phase
    # charger still lets the vehicle draw on three (OCPP 1.6 numberPhases is
    # what may be used, the power limit is the power)
    if not p[_WATTS]:
        return lim
    return lim / (_VOLTS * phases)


def _at(p, t, tx_start, phases):
    """Profile p's limit (A) at t, or None when it does not apply then."""
    if (p[_FROM] is not None and t < p[_FROM]) or (p[_TO] is not None and t >= p[_TO]):
        return None
    s = _start(p, t, tx_start)
    if s is None or t < s:
        return None
    e = t - s
    if p[_DURATION] is not None and e >= p[_DURATION]:
        return None
    got = None
    for sp, lim, _ in p[_PERIODS]:
        if sp > e:
            break
        got = _amps(p, lim, phases)
    return got


class Profiles:
    def __init__(self):
        self.profiles = []

    def set(self, connector, cs, tx_id):
        """SetChargingProfile for `connector` (0: the charge point) during
        transaction `tx_id` (None: none): "Accepted" or "Rejected"; raises
        TypeError or Invalid for a malformed profile (parse)."""
        p = parse(cs)
        if p is None:
            return "Rejected"
        purpose = p[_PURPOSE]
        if purpose == 0 and connector != 0:
            return "Rejected"  # ChargePointMaxProfile is for connector 0 only
        if purpose == 2:
            if connector == 0 or tx_id is None or (p[_TX] is not None and p[_TX] != tx_id):
                return "Rejected"  # a TxProfile needs the running transaction
            p[_TX] = tx_id
        keep = []
        for q in self.profiles:  # the same id, or the same stack level and purpose: replaced
            if q[_ID] != p[_ID] and not (q[_STACK] == p[_STACK] and q[_PURPOSE] == purpose):
                keep.append(q)
        if len(keep) >= _MAX_PROFILES:
            return "Rejected"
        keep.append(p)
        self.profiles = keep
        return "Accepted"

    def clear(self, pid=None, purpose=None, stack=None):
        """ClearChargingProfile: by id, else every profile matching the
        criteria given. True when one or more went."""
        pi = PURPOSES.index(purpose) if purpose in PURPOSES else None
        if purpose is not None and pi is None:
            return False
        keep = []
        for q in self.profiles:
            if pid is not None:
                hit = q[_ID] == pid
            else:
                hit = (pi is None or q[_PURPOSE] == pi) and (stack is None or q[_STACK] == stack)
            if not hit:
                keep.append(q)
        gone = len(keep) != len(self.profiles)
        self.profiles = keep
        return gone

    def end_transaction(self):
        """A TxProfile lasts as long as its transaction."""
        self.profiles = [q for q in self.profiles if q[_PURPOSE] != 2]

    def limit_a(self, t, tx_start, tx_id, phases):
        """The composite limit (A) at t (s since 2020), or None when no profile
        limits the charge then."""
        # per purpose the highest stack level that limits now, and its limit;
        # locals, not a list of tuples: this runs every second (no allocation)
        s0 = s1 = s2 = -1
        l0 = l1 = l2 = None
        for q in self.profiles:
            i = q[_PURPOSE]
            if i == 2 and q[_TX] != tx_id:
                continue
            if i != 0 and tx_start is None and q[_KIND] == 2:
                # relative to a transaction there is not (one under way counts
                # before its StartTransaction is answered: it charges already)
                continue
            lim = _at(q, t, tx_start, phases)
            if lim is None:
                continue
            st = q[_STACK]
            if i == 0:
                if st > s0:
                    s0, l0 = st, lim
            elif i == 1:
                if st > s1:
                    s1, l1 = st, lim
            elif st > s2:
                s2, l2 = st, lim
        out = l2 if s2 >= 0 else l1  # a TxProfile overrides the TxDefaultProfile
        if s0 >= 0 and (out is None or l0 < out):
            out = l0  # ChargePointMaxProfile caps both
        return out

    def schedule(self, t0, seconds, tx_start, tx_id, phases, default_a):
        """GetCompositeSchedule over [t0, t0 + seconds): [(start s from t0,
        limit A)], a new period wherever the composite changes; where no
        profile limits, `default_a` (the installation's maximum)."""
        marks = [t0]
        end = t0 + seconds
        for q in self.profiles:
            for b in (q[_FROM], q[_TO]):
                if b is not None:
                    marks.append(b)
            s = _start(q, t0, tx_start)
            if s is None:
                continue
            while s < end:
                for sp, _, _ in q[_PERIODS]:
                    marks.append(s + sp)
                if q[_DURATION] is not None:
                    marks.append(s + q[_DURATION])
                if not q[_PERIOD_S]:
                    break
                s += q[_PERIOD_S]
        out = []
        last = None
        for m in sorted(marks):
            if m < t0 or m >= end:
                continue
            lim = self.limit_a(m, tx_start, tx_id, phases)
            if lim is None:
                lim = default_a
            if lim != last:
                out.append((m - t0, lim))
                last = lim
        return out
