//! Conversion rules (SPEC §6) as domain types, and the pure money → points calculation.
//!
//! A rule is a `code` with numbered versions. A version's [`RuleTerms`] say how money becomes points:
//! `points = rounding(amount / unit_amount × points_per_unit)`, then capped at `max_points`. The calculation is exact:
//! it is done on the integers behind the decimals (with 256-bit intermediates), so floor, ceil and ties never depend
//! on how a quotient like 10 / 3 would be cut to 28 digits.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::money::{Currency, Money, ZeroAmount};
use crate::error::{ServiceError, ServiceResult};

/// The rule a calculation uses when the caller names none.
pub const DEFAULT_RULE_CODE: &str = "default";
/// Longest `points_ttl_days`: 100 years.
pub const POINTS_TTL_DAYS_MAX: i32 = 36_500;
const RULE_CODE_LENGTH_MAX: usize = 40;

/// A rule code: `[a-z0-9_-]{1,40}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleCode(String);

impl RuleCode {
    pub fn parse(value: &str) -> ServiceResult<RuleCode> {
        let valid_chars = value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if value.is_empty() || value.len() > RULE_CODE_LENGTH_MAX || !valid_chars {
            return Err(ServiceError::invalid(format!(
                "rule code must be 1 to {RULE_CODE_LENGTH_MAX} characters of a-z, 0-9, '_' and '-'"
            )));
        }
        Ok(RuleCode(value.to_owned()))
    }

    /// The code a calculation uses: the one given, or [`DEFAULT_RULE_CODE`].
    pub fn parse_or_default(value: Option<&str>) -> ServiceResult<RuleCode> {
        RuleCode::parse(value.unwrap_or(DEFAULT_RULE_CODE))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a fractional number of points becomes whole points. Amounts are never negative, so "down" and "towards
/// zero" agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Down: 12.9 → 12.
    Floor,
    /// To the nearest whole point, ties (x.5) half away from zero, i.e. up: 12.5 → 13, 12.49 → 12.
    Round,
    /// Up: 12.1 → 13.
    Ceil,
}

impl Rounding {
    pub const fn as_str(self) -> &'static str {
        match self {
            Rounding::Floor => "floor",
            Rounding::Round => "round",
            Rounding::Ceil => "ceil",
        }
    }

    pub fn parse(value: &str) -> ServiceResult<Rounding> {
        match value {
            "floor" => Ok(Rounding::Floor),
            "round" => Ok(Rounding::Round),
            "ceil" => Ok(Rounding::Ceil),
            _ => Err(ServiceError::invalid(
                "rounding must be floor, round or ceil",
            )),
        }
    }
}

/// How a batch sync treats codes absent from its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Leave them as they are.
    Upsert,
    /// End them: every version of theirs not yet ended gets `effective_to` = now.
    Replace,
}

impl SyncMode {
    /// `upsert` (also the default, when empty) or `replace`.
    pub fn parse(value: &str) -> ServiceResult<SyncMode> {
        match value {
            "" | "upsert" => Ok(SyncMode::Upsert),
            "replace" => Ok(SyncMode::Replace),
            _ => Err(ServiceError::invalid("mode must be upsert or replace")),
        }
    }
}

/// How one rule version converts money to points. All values are already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTerms {
    pub currency: Currency,
    /// Money per step, > 0, with no more decimals than the currency has.
    pub unit_amount: Decimal,
    /// Points per step, > 0.
    pub points_per_unit: i64,
    pub rounding: Rounding,
    /// Amounts below this earn 0 points; see [`calculate`].
    pub min_amount: Option<Decimal>,
    /// Cap on the points of one conversion, > 0.
    pub max_points: Option<i64>,
    /// Lifetime of earned points in days, 1..=36500; None means they never expire.
    pub points_ttl_days: Option<i32>,
}

/// A rule version as a client sends it (PutRule, or one item of SyncRules), before any check.
#[derive(Debug, Clone, Default)]
pub struct RuleInput {
    pub code: String,
    pub currency: String,
    pub unit_amount: String,
    pub points_per_unit: i64,
    pub rounding: String,
    pub min_amount: Option<String>,
    pub max_points: Option<i64>,
    pub points_ttl_days: Option<i32>,
    pub effective_from: Option<DateTime<Utc>>,
    pub effective_to: Option<DateTime<Utc>>,
}

/// A checked rule version, ready to be numbered and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRuleVersion {
    pub code: RuleCode,
    pub terms: RuleTerms,
    pub effective_from: DateTime<Utc>,
    pub effective_to: Option<DateTime<Utc>>,
}

impl RuleInput {
    /// Checks every field; `effective_from` defaults to `now`, and `effective_to` must come after it.
    pub fn parse(&self, now: DateTime<Utc>) -> ServiceResult<NewRuleVersion> {
        let code = RuleCode::parse(&self.code)?;
        let currency = Currency::parse(&self.currency)?;
        let unit_amount = Money::parse(
            "unit_amount",
            &self.unit_amount,
            &currency,
            ZeroAmount::Refused,
        )?
        .amount();
        if self.points_per_unit <= 0 {
            return Err(ServiceError::invalid(
                "points_per_unit must be greater than 0",
            ));
        }
        let rounding = Rounding::parse(&self.rounding)?;
        let min_amount = self
            .min_amount
            .as_deref()
            .map(|value| {
                Money::parse("min_amount", value, &currency, ZeroAmount::Allowed)
                    .map(|money| money.amount())
            })
            .transpose()?;
        if self.max_points.is_some_and(|max_points| max_points <= 0) {
            return Err(ServiceError::invalid("max_points must be greater than 0"));
        }
        if self
            .points_ttl_days
            .is_some_and(|days| !(1..=POINTS_TTL_DAYS_MAX).contains(&days))
        {
            return Err(ServiceError::invalid(format!(
                "points_ttl_days must be between 1 and {POINTS_TTL_DAYS_MAX}"
            )));
        }
        let effective_from = truncate_to_micros(self.effective_from.unwrap_or(now));
        let effective_to = self.effective_to.map(truncate_to_micros);
        if effective_to.is_some_and(|to| to <= effective_from) {
            return Err(ServiceError::invalid(
                "effective_to must be after effective_from",
            ));
        }
        let terms = RuleTerms {
            currency,
            unit_amount,
            points_per_unit: self.points_per_unit,
            rounding,
            min_amount,
            max_points: self.max_points,
            points_ttl_days: self.points_ttl_days,
        };
        Ok(NewRuleVersion {
            code,
            terms,
            effective_from,
            effective_to,
        })
    }
}

/// Cuts a time to whole microseconds, PostgreSQL's `timestamptz` precision, so a time compared in SQL is the time
/// the client was shown.
pub fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// The outcome of one conversion, before it is tied to a stored rule version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calculation {
    /// Whole points after rounding, the minimum and the cap.
    pub points: i64,
    /// `amount / unit_amount × points_per_unit` before rounding: exact when it ends within 28 significant digits,
    /// otherwise rounded (half up) to 28 significant digits.
    pub raw_points: Decimal,
    /// True when `max_points` cut the result.
    pub capped: bool,
    /// True when the amount was below `min_amount`, which makes the result 0 points.
    pub below_min_amount: bool,
}

/// Converts a non-negative `amount` (in the terms' currency) to points.
///
/// An amount below `min_amount` earns **0 points** rather than an error: a purchase that is too small is a normal
/// outcome a merchant shows its customer ("spend 5.00 more to earn points"), not a bad request; `raw_points` still
/// shows what the amount would have been worth. A result above `i64::MAX` points before the cap is
/// INVALID_ARGUMENT, even when `max_points` would cut it, so `raw_points` always fits in the response.
pub fn calculate(amount: Decimal, terms: &RuleTerms) -> ServiceResult<Calculation> {
    let too_large = || {
        ServiceError::invalid(format!(
            "amount is too large: it converts to more than {} points",
            i64::MAX
        ))
    };
    if amount.is_sign_negative() || terms.unit_amount <= Decimal::ZERO || terms.points_per_unit <= 0
    {
        return Err(ServiceError::invalid(
            "amount, unit_amount and points_per_unit must be positive",
        ));
    }
    let ratio =
        PointsRatio::new(amount, terms.unit_amount, terms.points_per_unit).ok_or_else(too_large)?;
    let (quotient, remainder) = ratio.divide().ok_or_else(too_large)?;
    let rounds_up = match terms.rounding {
        Rounding::Floor => false,
        Rounding::Ceil => remainder != 0,
        // Half away from zero: up when remainder / denominator >= 1/2, written without overflow.
        Rounding::Round => remainder >= ratio.denominator - remainder,
    };
    let rounded = quotient
        .checked_add(u128::from(rounds_up))
        .ok_or_else(too_large)?;
    let rounded = i64::try_from(rounded).map_err(|_| too_large())?;
    let raw_points = ratio
        .to_decimal(quotient, remainder)
        .ok_or_else(too_large)?;
    let below_min_amount = terms
        .min_amount
        .is_some_and(|min_amount| amount < min_amount);
    let (points, capped) = match terms.max_points {
        _ if below_min_amount => (0, false),
        Some(max_points) if rounded > max_points => (max_points, true),
        _ => (rounded, false),
    };
    Ok(Calculation {
        points,
        raw_points,
        capped,
        below_min_amount,
    })
}

/// `amount × points_per_unit / unit_amount` as a fraction of integers: the decimals' mantissas with the scales
/// moved across, `(m_amount × points_per_unit × 10^s_unit) / (m_unit × 10^s_amount)`.
struct PointsRatio {
    /// The numerator is `left × right`, kept as two factors because the product needs up to 256 bits.
    left: u128,
    right: u128,
    denominator: u128,
}

impl PointsRatio {
    /// None when a factor does not fit in 128 bits, which no amount of ≤ 28 digits with ≤ 4 decimals reaches.
    fn new(amount: Decimal, unit_amount: Decimal, points_per_unit: i64) -> Option<PointsRatio> {
        let amount_mantissa = u128::try_from(amount.mantissa()).ok()?;
        let unit_mantissa = u128::try_from(unit_amount.mantissa()).ok()?;
        let points_per_unit = u128::try_from(points_per_unit).ok()?;
        let right = points_per_unit.checked_mul(10u128.checked_pow(unit_amount.scale())?)?;
        let denominator = unit_mantissa.checked_mul(10u128.checked_pow(amount.scale())?)?;
        if denominator == 0 {
            return None;
        }
        Some(PointsRatio {
            left: amount_mantissa,
            right,
            denominator,
        })
    }

    /// The whole part and remainder; None when the whole part does not fit in 128 bits.
    fn divide(&self) -> Option<(u128, u128)> {
        let (high, low) = multiply_wide(self.left, self.right);
        divide_wide(high, low, self.denominator)
    }

    /// `quotient + remainder / denominator` as a decimal of at most 28 significant digits, by long division.
    fn to_decimal(&self, quotient: u128, mut remainder: u128) -> Option<Decimal> {
        const MANTISSA_LIMIT: u128 = 10u128.pow(28);
        const SCALE_MAX: u32 = 28;
        let mut mantissa = quotient;
        let mut scale = 0;
        while remainder != 0 && scale < SCALE_MAX && mantissa < MANTISSA_LIMIT / 10 {
            let (digit, next) = self.next_digit(remainder)?;
            mantissa = mantissa * 10 + digit;
            remainder = next;
            scale += 1;
        }
        if remainder != 0 {
            let (digit, _) = self.next_digit(remainder)?;
            if digit >= 5 {
                mantissa += 1;
            }
        }
        let mantissa = i128::try_from(mantissa).ok()?;
        Decimal::try_from_i128_with_scale(mantissa, scale)
            .ok()
            .map(|decimal| decimal.normalize())
    }

    /// The next decimal digit of `remainder / denominator` and the remainder after it.
    fn next_digit(&self, remainder: u128) -> Option<(u128, u128)> {
        let (high, low) = multiply_wide(remainder, 10);
        divide_wide(high, low, self.denominator)
    }
}

/// The full 256-bit product of two `u128`, as (high, low) halves.
fn multiply_wide(left: u128, right: u128) -> (u128, u128) {
    const HALF: u32 = 64;
    const MASK: u128 = u64::MAX as u128;
    let (left_high, left_low) = (left >> HALF, left & MASK);
    let (right_high, right_low) = (right >> HALF, right & MASK);
    let low_low = left_low * right_low;
    let high_low = left_high * right_low;
    let low_high = left_low * right_high;
    let high_high = left_high * right_high;
    // Each partial product is below 2^128; the middle column's carries are added explicitly.
    let middle = (low_low >> HALF) + (high_low & MASK) + (low_high & MASK);
    let low = (middle << HALF) | (low_low & MASK);
    let high = high_high + (high_low >> HALF) + (low_high >> HALF) + (middle >> HALF);
    (high, low)
}

/// Divides the 256-bit `(high, low)` by `divisor`: (quotient, remainder), or None when the quotient needs more than
/// 128 bits (exactly when `high >= divisor`). Plain binary long division: 128 steps, always exact.
fn divide_wide(high: u128, low: u128, divisor: u128) -> Option<(u128, u128)> {
    if divisor == 0 || high >= divisor {
        return None;
    }
    let mut remainder = high;
    let mut quotient = 0u128;
    for bit in (0..128).rev() {
        // The remainder is below the divisor, so doubling it needs at most one bit more than 128: keep that bit.
        let overflowed = remainder >> 127 == 1;
        remainder = (remainder << 1) | ((low >> bit) & 1);
        if overflowed || remainder >= divisor {
            remainder = remainder.wrapping_sub(divisor);
            quotient |= 1 << bit;
        }
    }
    Some((quotient, remainder))
}

/// One version of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVersion {
    pub code: String,
    pub version: i32,
    pub currency: String,
    pub unit_amount: Decimal,
    pub points_per_unit: i64,
    pub rounding: String,
    pub min_amount: Option<Decimal>,
    pub max_points: Option<i64>,
    pub points_ttl_days: Option<i32>,
    pub effective_from: DateTime<Utc>,
    pub effective_to: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;

    use super::*;

    fn decimal(value: &str) -> Decimal {
        Decimal::from_str(value).expect("decimal")
    }

    fn terms(unit_amount: &str, points_per_unit: i64, rounding: Rounding) -> RuleTerms {
        RuleTerms {
            currency: Currency::parse("EUR").expect("currency"),
            unit_amount: decimal(unit_amount),
            points_per_unit,
            rounding,
            min_amount: None,
            max_points: None,
            points_ttl_days: None,
        }
    }

    #[test]
    fn each_rounding_mode_rounds_as_documented() {
        use Rounding::{Ceil, Floor, Round};
        // (amount, unit_amount, points_per_unit, rounding, points, raw_points)
        let table = [
            ("12.50", "1.00", 10, Floor, 125, "125"),
            ("12.34", "1", 1, Floor, 12, "12.34"),
            ("12.34", "1", 1, Round, 12, "12.34"),
            ("12.34", "1", 1, Ceil, 13, "12.34"),
            ("12.99", "1", 1, Floor, 12, "12.99"),
            ("12.99", "1", 1, Round, 13, "12.99"),
            ("12.01", "1", 1, Ceil, 13, "12.01"),
            ("12.00", "1", 1, Ceil, 12, "12"),
            // Ties: exactly x.5 goes up (half away from zero); just below stays down.
            ("12.50", "1", 1, Round, 13, "12.5"),
            ("0.50", "1", 1, Round, 1, "0.5"),
            ("12.49", "1", 1, Round, 12, "12.49"),
            ("12.50", "1", 1, Floor, 12, "12.5"),
            ("12.50", "1", 1, Ceil, 13, "12.5"),
            // Non-terminating quotients round exactly, however the decimal display is cut.
            ("10", "3", 1, Floor, 3, "3.333333333333333333333333333"),
            ("10", "3", 1, Ceil, 4, "3.333333333333333333333333333"),
            ("20", "3", 1, Round, 7, "6.666666666666666666666666667"),
            ("1", "3", 3, Floor, 1, "1"),
            (
                "0.01",
                "0.03",
                1,
                Round,
                0,
                "0.3333333333333333333333333333",
            ),
            ("5", "2", 3, Round, 8, "7.5"),
        ];
        for (amount, unit_amount, points_per_unit, rounding, points, raw_points) in table {
            let result = calculate(
                decimal(amount),
                &terms(unit_amount, points_per_unit, rounding),
            )
            .expect(amount);
            assert_eq!(
                result.points, points,
                "{amount} / {unit_amount} × {points_per_unit} {rounding:?}"
            );
            assert_eq!(
                result.raw_points.to_string(),
                raw_points,
                "{amount} / {unit_amount} raw"
            );
            assert!(!result.capped && !result.below_min_amount);
        }
    }

    #[test]
    fn amounts_below_the_minimum_earn_zero_points_and_the_minimum_itself_counts() {
        let mut terms = terms("1", 1, Rounding::Floor);
        terms.min_amount = Some(decimal("5"));
        let below = calculate(decimal("4.99"), &terms).expect("below");
        assert_eq!(
            (below.points, below.below_min_amount, below.raw_points),
            (0, true, decimal("4.99"))
        );
        let at = calculate(decimal("5.00"), &terms).expect("at");
        assert_eq!((at.points, at.below_min_amount), (5, false));
    }

    #[test]
    fn max_points_caps_the_result_and_says_so() {
        let mut terms = terms("1", 10, Rounding::Floor);
        terms.max_points = Some(100);
        let table = [
            ("9.99", 99, false),
            ("10", 100, false),
            ("10.10", 100, true),
            ("10.09", 100, false),
            ("1000000", 100, true),
        ];
        for (amount, points, capped) in table {
            let result = calculate(decimal(amount), &terms).expect(amount);
            assert_eq!((result.points, result.capped), (points, capped), "{amount}");
        }
    }

    #[test]
    fn large_amounts_convert_exactly_without_overflow() {
        let table = [
            // i64::MAX points exactly.
            ("92233720368547758.07", "0.01", 1, i64::MAX),
            (
                "9999999999999999999999999999",
                "10000000000000000000",
                1,
                999_999_999,
            ),
            (
                "99999999999999999999999999.99",
                "1000000000000000000000",
                1000,
                99_999_999,
            ),
            ("1000000000", "0.01", 1_000_000, 100_000_000_000_000_000),
        ];
        for (amount, unit_amount, points_per_unit, points) in table {
            let result = calculate(
                decimal(amount),
                &terms(unit_amount, points_per_unit, Rounding::Floor),
            )
            .expect(amount);
            assert_eq!(result.points, points, "{amount}");
        }
    }

    #[test]
    fn results_beyond_i64_are_invalid_argument_not_a_wrap() {
        let table = [
            ("92233720368547758.08", "0.01", 1),
            ("9999999999999999999999999999", "0.01", i64::MAX),
            ("92233720368547758.07", "0.01", 2),
        ];
        for (amount, unit_amount, points_per_unit) in table {
            let error = calculate(
                decimal(amount),
                &terms(unit_amount, points_per_unit, Rounding::Ceil),
            )
            .expect_err(amount);
            assert_eq!(error.code, crate::error::ErrorCode::InvalidArgument);
        }
        // Rounding up past the limit is also refused.
        let error = calculate(
            decimal("92233720368547758.075"),
            &terms("0.01", 1, Rounding::Ceil),
        )
        .expect_err("ceil");
        assert_eq!(error.code, crate::error::ErrorCode::InvalidArgument);
    }

    #[test]
    fn rule_input_is_checked_field_by_field() {
        let now = Utc::now();
        let valid = RuleInput {
            code: "default".into(),
            currency: "EUR".into(),
            unit_amount: "1.00".into(),
            points_per_unit: 10,
            rounding: "floor".into(),
            ..RuleInput::default()
        };
        let parsed = valid.parse(now).expect("valid");
        assert_eq!(parsed.effective_from, truncate_to_micros(now));
        type Breaker = fn(&mut RuleInput);
        let breakers: [(&str, Breaker); 14] = [
            ("empty code", |input| input.code = String::new()),
            ("upper code", |input| input.code = "VIP".into()),
            ("long code", |input| input.code = "a".repeat(41)),
            ("currency", |input| input.currency = "eur".into()),
            ("zero unit", |input| input.unit_amount = "0".into()),
            ("unit decimals", |input| input.unit_amount = "0.001".into()),
            ("points_per_unit", |input| input.points_per_unit = 0),
            ("rounding", |input| input.rounding = "bankers".into()),
            ("min_amount", |input| input.min_amount = Some("-1".into())),
            ("max_points", |input| input.max_points = Some(0)),
            ("ttl low", |input| input.points_ttl_days = Some(0)),
            ("ttl high", |input| input.points_ttl_days = Some(36_501)),
            ("to before from", |input| {
                input.effective_to = Some(Utc::now() - chrono::Duration::days(1))
            }),
            ("to equal from", |input| {
                input.effective_from = Some(Utc::now());
                input.effective_to = input.effective_from;
            }),
        ];
        for (name, breaker) in breakers {
            let mut input = valid.clone();
            breaker(&mut input);
            let error = input.parse(now).expect_err(name);
            assert_eq!(
                error.code,
                crate::error::ErrorCode::InvalidArgument,
                "{name}"
            );
        }
    }

    #[test]
    fn wide_arithmetic_matches_native_arithmetic_at_the_edges() {
        assert_eq!(multiply_wide(u128::MAX, u128::MAX), (u128::MAX - 1, 1));
        assert_eq!(multiply_wide(1 << 64, 1 << 64), (1, 0));
        assert_eq!(divide_wide(1, 0, 1 << 64), Some((1 << 64, 0)));
        assert_eq!(
            divide_wide(u128::MAX - 1, 1, u128::MAX),
            Some((u128::MAX, 0))
        );
        assert_eq!(divide_wide(1, 0, 1), None);
    }

    proptest! {
        #[test]
        fn exact_rounding_agrees_with_native_integer_arithmetic(
            amount_mantissa in 0u64..1_000_000_000_000,
            amount_scale in 0u32..=3,
            unit_mantissa in 1u64..1_000_000_000,
            unit_scale in 0u32..=3,
            points_per_unit in 1i64..1_000_000,
        ) {
            let amount = Decimal::new(amount_mantissa as i64, amount_scale);
            let unit_amount = Decimal::new(unit_mantissa as i64, unit_scale);
            let numerator =
                u128::from(amount_mantissa) * points_per_unit as u128 * 10u128.pow(unit_scale);
            let denominator = u128::from(unit_mantissa) * 10u128.pow(amount_scale);
            let floor = numerator / denominator;
            let remainder = numerator % denominator;
            let expected = [
                (Rounding::Floor, floor),
                (Rounding::Ceil, floor + u128::from(remainder > 0)),
                (Rounding::Round, floor + u128::from(2 * remainder >= denominator)),
            ];
            for (rounding, points) in expected {
                let mut terms = terms("1", points_per_unit, rounding);
                terms.unit_amount = unit_amount;
                let result = calculate(amount, &terms).expect("calculate");
                prop_assert_eq!(result.points as u128, points);
                prop_assert!(result.raw_points.floor() == Decimal::from(floor as i64) || remainder != 0);
            }
        }
    }
}
