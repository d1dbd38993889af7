//! Exact decimal money (SPEC §5, §6): an ISO-4217 currency and a `rust_decimal` amount, parsed once at the edge.
//!
//! Amounts arrive as decimal strings and are parsed digit by digit rather than with `Decimal::from_str`, because
//! that parser silently rounds digits it cannot hold and accepts exponents and signs; a money amount must be
//! exactly what the client sent or a clear INVALID_ARGUMENT. No floating point is used anywhere in money code.

use rust_decimal::Decimal;

use crate::error::{ServiceError, ServiceResult};

/// Most significant digits a money amount may have: what a `Decimal` holds exactly.
pub const SIGNIFICANT_DIGITS_MAX: usize = 28;

/// Longest accepted amount string; leading zeros beyond this are noise, not precision.
const AMOUNT_LENGTH_MAX: usize = 64;

/// Minor units of the currencies that do not use two decimals (ISO 4217). Every other code uses two.
const MINOR_UNITS: &[(&str, u32)] = &[
    ("BIF", 0),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("ISK", 0),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("PYG", 0),
    ("RWF", 0),
    ("UGX", 0),
    ("UYI", 0),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    ("BHD", 3),
    ("IQD", 3),
    ("JOD", 3),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("TND", 3),
    ("CLF", 4),
    ("UYW", 4),
];

/// Decimals of a currency without an entry in [`MINOR_UNITS`].
const MINOR_UNITS_DEFAULT: u32 = 2;

/// An ISO-4217 currency code: three uppercase ASCII letters.
///
/// Any such code is accepted (the list of live codes changes); its decimals come from [`MINOR_UNITS`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency(String);

impl Currency {
    /// Parses `[A-Z]{3}`. Lowercase is refused rather than uppercased, so what is stored is what was sent.
    pub fn parse(value: &str) -> ServiceResult<Currency> {
        if value.len() != 3 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ServiceError::invalid(format!(
                "currency must be an ISO-4217 code of three uppercase letters (e.g. EUR), not {:?}",
                truncate_for_message(value)
            )));
        }
        Ok(Currency(value.to_owned()))
    }

    pub fn code(&self) -> &str {
        &self.0
    }

    /// How many decimals an amount in this currency may have: 0 for JPY, 3 for KWD, 2 for most.
    pub fn minor_units(&self) -> u32 {
        MINOR_UNITS
            .iter()
            .find(|(code, _)| *code == self.0)
            .map_or(MINOR_UNITS_DEFAULT, |(_, units)| *units)
    }
}

/// Whether an amount may be zero. Negative amounts are never money here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroAmount {
    Allowed,
    Refused,
}

/// An exact amount in a currency, with no more decimals than the currency has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Parses `amount` (plain digits with an optional fraction, e.g. `12.50`) in `currency`.
    ///
    /// Refused: empty, signs, exponents, spaces, `.5` or `5.`, more decimals than the currency allows, and more
    /// than [`SIGNIFICANT_DIGITS_MAX`] significant digits once written with the currency's decimals. Trailing
    /// zeros do not count as decimals (`100.00 JPY` is `100 JPY`), since they add no precision. The amount is kept
    /// with exactly the currency's decimals (`12.5 EUR` becomes `12.50`). `field` names the input in messages.
    pub fn parse(
        field: &str,
        amount: &str,
        currency: &Currency,
        zero: ZeroAmount,
    ) -> ServiceResult<Money> {
        let (mantissa, scale) = parse_decimal(field, amount)?;
        let decimals = currency.minor_units();
        if scale > decimals {
            return Err(ServiceError::invalid(format!(
                "{field} has more decimals than {} allows ({decimals})",
                currency.code()
            )));
        }
        let too_many_digits = || {
            ServiceError::invalid(format!(
                "{field} has more than {SIGNIFICANT_DIGITS_MAX} digits when written with the {decimals} decimals of {}",
                currency.code()
            ))
        };
        let mantissa = 10i128
            .checked_pow(decimals - scale)
            .and_then(|factor| mantissa.checked_mul(factor))
            .filter(|mantissa| *mantissa < 10i128.pow(SIGNIFICANT_DIGITS_MAX as u32))
            .ok_or_else(too_many_digits)?;
        let amount =
            Decimal::try_from_i128_with_scale(mantissa, decimals).map_err(|_| too_many_digits())?;
        if zero == ZeroAmount::Refused && amount.is_zero() {
            return Err(ServiceError::invalid(format!(
                "{field} must be greater than 0"
            )));
        }
        Ok(Money {
            amount,
            currency: currency.clone(),
        })
    }

    /// The amount, with exactly the currency's decimals.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> &Currency {
        &self.currency
    }
}

impl std::fmt::Display for Money {
    /// The amount with exactly the currency's decimals, e.g. `12.50` for EUR, `1000` for JPY.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&format_amount(self.amount, self.currency.minor_units()))
    }
}

/// Formats an amount with at least `decimals` decimals (`12.5` with 2 → `12.50`), by padding the text: rescaling
/// the `Decimal` itself could overflow its mantissa for a 28-digit amount.
pub fn format_amount(amount: Decimal, decimals: u32) -> String {
    let text = amount.normalize().to_string();
    let (integer, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let width = usize::try_from(decimals).unwrap_or(0).max(fraction.len());
    if width == 0 {
        return integer.to_owned();
    }
    format!("{integer}.{fraction:0<width$}")
}

/// Parses a non-negative plain decimal string exactly into (mantissa, scale), without trailing fraction zeros.
fn parse_decimal(field: &str, value: &str) -> ServiceResult<(i128, u32)> {
    let malformed = || {
        ServiceError::invalid(format!(
            "{field} must be a decimal number like 12.50 (digits, an optional fraction, no sign or exponent), not {:?}",
            truncate_for_message(value)
        ))
    };
    if value.is_empty() || value.len() > AMOUNT_LENGTH_MAX {
        return Err(malformed());
    }
    let (integer, fraction) = value.split_once('.').unwrap_or((value, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if integer.is_empty() || !all_digits(integer) || !all_digits(fraction) || value.ends_with('.') {
        return Err(malformed());
    }
    // Leading integer zeros and trailing fraction zeros carry no precision; everything between them does.
    let fraction = fraction.trim_end_matches('0');
    let digits = format!("{integer}{fraction}");
    let significant = digits.trim_start_matches('0');
    if significant.len() > SIGNIFICANT_DIGITS_MAX {
        return Err(ServiceError::invalid(format!(
            "{field} has more than {SIGNIFICANT_DIGITS_MAX} significant digits"
        )));
    }
    // At most 28 digits, so the integer holds it exactly.
    let mantissa: i128 = if significant.is_empty() {
        0
    } else {
        significant.parse().map_err(|_| malformed())?
    };
    let scale = u32::try_from(fraction.len()).map_err(|_| malformed())?;
    Ok((mantissa, scale))
}

/// Cuts echoed input so an error message stays short whatever the client sent.
fn truncate_for_message(value: &str) -> String {
    value.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn currency(code: &str) -> Currency {
        Currency::parse(code).expect("currency")
    }

    #[test]
    fn currencies_are_three_uppercase_letters_with_known_minor_units() {
        for bad in ["", "EU", "EURO", "eur", "E1R", "ÉUR"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?}");
        }
        let table = [
            ("EUR", 2),
            ("USD", 2),
            ("JPY", 0),
            ("KRW", 0),
            ("KWD", 3),
            ("BHD", 3),
            ("JOD", 3),
            ("OMR", 3),
            ("TND", 3),
            ("XYZ", 2),
        ];
        for (code, units) in table {
            assert_eq!(currency(code).minor_units(), units, "{code}");
        }
    }

    #[test]
    fn well_formed_amounts_parse_exactly_and_format_with_the_currency_decimals() {
        let table = [
            ("12.50", "EUR", "12.50"),
            ("12.5", "EUR", "12.50"),
            ("12", "EUR", "12.00"),
            ("0012.500", "EUR", "12.50"),
            ("1000", "JPY", "1000"),
            ("1000.00", "JPY", "1000"),
            ("1.234", "KWD", "1.234"),
            (
                "9999999999999999999999999999",
                "JPY",
                "9999999999999999999999999999",
            ),
            (
                "99999999999999999999999999.99",
                "EUR",
                "99999999999999999999999999.99",
            ),
            (
                "99999999999999999999999999.9900",
                "EUR",
                "99999999999999999999999999.99",
            ),
            ("0.01", "EUR", "0.01"),
        ];
        for (input, code, expected) in table {
            let money =
                Money::parse("amount", input, &currency(code), ZeroAmount::Refused).expect(input);
            assert_eq!(money.to_string(), expected, "{input} {code}");
        }
    }

    #[test]
    fn malformed_amounts_are_refused_with_a_clear_message() {
        let eur = currency("EUR");
        for bad in [
            "", "-1", "+1", "1e3", "1E3", " 1", "1 ", ".5", "5.", "1.2.3", "1,50", "NaN", "inf",
            "0x10", "١٢",
        ] {
            let error = Money::parse("amount", bad, &eur, ZeroAmount::Allowed).expect_err(bad);
            assert_eq!(error.code, crate::error::ErrorCode::InvalidArgument);
            assert!(
                error.message.starts_with("amount "),
                "{bad:?}: {}",
                error.message
            );
        }
        let too_long = "1".repeat(29);
        assert!(Money::parse("amount", &too_long, &currency("JPY"), ZeroAmount::Allowed).is_err());
        // 27 integer digits fit in JPY but not with the two decimals of EUR.
        let integer_digits_27 = "1".repeat(27);
        assert!(
            Money::parse(
                "amount",
                &integer_digits_27,
                &currency("JPY"),
                ZeroAmount::Allowed
            )
            .is_ok()
        );
        assert!(
            Money::parse(
                "amount",
                &integer_digits_27,
                &currency("EUR"),
                ZeroAmount::Allowed
            )
            .is_err()
        );
        let padded = format!("{}1", "0".repeat(70));
        assert!(Money::parse("amount", &padded, &eur, ZeroAmount::Allowed).is_err());
    }

    #[test]
    fn more_decimals_than_the_currency_allows_is_invalid_argument() {
        let table = [("1.5", "JPY"), ("1.001", "EUR"), ("1.0001", "KWD")];
        for (input, code) in table {
            let error = Money::parse("amount", input, &currency(code), ZeroAmount::Allowed)
                .expect_err(input);
            assert!(
                error.message.contains("more decimals than"),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn zero_is_refused_only_where_it_must_be_positive() {
        let eur = currency("EUR");
        assert!(Money::parse("amount", "0.00", &eur, ZeroAmount::Refused).is_err());
        assert_eq!(
            Money::parse("min_amount", "0", &eur, ZeroAmount::Allowed)
                .expect("zero")
                .to_string(),
            "0.00"
        );
    }
}
