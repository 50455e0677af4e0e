//! Exact money for the contract's [`Money`] message: ISO 4217 currencies and
//! their minor units, and lossless conversion between `units + nanos` on the
//! wire and integer minor units (cents) in storage and arithmetic.
//!
//! Floating point only appears for the book's legacy `float price` fields,
//! and only at the edge: [`minor_from_legacy_price`] on the way in,
//! [`Money::to_legacy_price`] on the way out.

use crate::ecommerce::Money;

const NANOS_PER_UNIT: i64 = 1_000_000_000;

/// Active ISO 4217 currency codes and the number of digits of their minor unit.
#[rustfmt::skip]
const CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2),
    ("AUD", 2), ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2),
    ("BHD", 3), ("BIF", 0), ("BMD", 2), ("BND", 2), ("BOB", 2), ("BOV", 2), ("BRL", 2),
    ("BSD", 2), ("BTN", 2), ("BWP", 2), ("BYN", 2), ("BZD", 2), ("CAD", 2), ("CDF", 2),
    ("CHE", 2), ("CHF", 2), ("CHW", 2), ("CLF", 4), ("CLP", 0), ("CNY", 2), ("COP", 2),
    ("COU", 2), ("CRC", 2), ("CUP", 2), ("CVE", 2), ("CZK", 2), ("DJF", 0), ("DKK", 2),
    ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2), ("EUR", 2), ("FJD", 2),
    ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2), ("GMD", 2), ("GNF", 0),
    ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2), ("HUF", 2), ("IDR", 2),
    ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2), ("JOD", 3),
    ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0),
    ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2),
    ("LSL", 2), ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2), ("MMK", 2),
    ("MNT", 2), ("MOP", 2), ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2), ("MXN", 2),
    ("MXV", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2), ("NGN", 2), ("NIO", 2), ("NOK", 2),
    ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2), ("PGK", 2), ("PHP", 2),
    ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2), ("RUB", 2),
    ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2),
    ("SHP", 2), ("SLE", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2),
    ("SYP", 2), ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2),
    ("TRY", 2), ("TTD", 2), ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2),
    ("USN", 2), ("UYI", 0), ("UYU", 2), ("UYW", 4), ("UZS", 2), ("VED", 2), ("VES", 2),
    ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2), ("XCG", 2), ("XOF", 0),
    ("XPF", 0), ("YER", 2), ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

/// Digits of `code`'s minor unit (2 for USD, 0 for JPY, 3 for KWD), or
/// `None` when `code` is not an active ISO 4217 currency.
pub fn minor_digits(code: &str) -> Option<u32> {
    CURRENCIES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| CURRENCIES[i].1)
}

/// Why an amount cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency code {0:?} (expected an ISO 4217 code such as USD)")]
    UnknownCurrency(String),
    #[error("nanos must be between -999999999 and 999999999")]
    NanosOutOfRange,
    #[error("units and nanos must have the same sign")]
    SignMismatch,
    #[error("{currency} amounts have at most {digits} decimal places")]
    TooPrecise { currency: String, digits: u32 },
    #[error("amount is too large")]
    Overflow,
    #[error("amount must be a finite number")]
    NotFinite,
}

impl Money {
    /// `minor` minor units of `currency` (1999 USD cents → 19.99 USD).
    /// Unknown currencies are treated as having 2 decimals; callers validate
    /// codes on the way in.
    pub fn from_minor(currency: &str, minor: i64) -> Money {
        let scale = 10_i64.pow(minor_digits(currency).unwrap_or(2));
        let units = minor / scale;
        let nanos = (minor % scale) * (NANOS_PER_UNIT / scale);
        Money {
            currency_code: currency.to_owned(),
            units,
            nanos: nanos as i32,
        }
    }

    /// The amount in minor units, checking the currency, the sign and that it
    /// is not finer than the currency's minor unit.
    pub fn to_minor(&self) -> Result<i64, MoneyError> {
        let digits = minor_digits(&self.currency_code)
            .ok_or_else(|| MoneyError::UnknownCurrency(self.currency_code.clone()))?;
        if !(-999_999_999..=999_999_999).contains(&self.nanos) {
            return Err(MoneyError::NanosOutOfRange);
        }
        if (self.units > 0 && self.nanos < 0) || (self.units < 0 && self.nanos > 0) {
            return Err(MoneyError::SignMismatch);
        }
        let scale = 10_i64.pow(digits);
        let nanos_per_minor = NANOS_PER_UNIT / scale;
        if i64::from(self.nanos) % nanos_per_minor != 0 {
            return Err(MoneyError::TooPrecise {
                currency: self.currency_code.clone(),
                digits,
            });
        }
        self.units
            .checked_mul(scale)
            .and_then(|u| u.checked_add(i64::from(self.nanos) / nanos_per_minor))
            .ok_or(MoneyError::Overflow)
    }

    /// The nearest `f32`, for the book's legacy `float price` fields.
    pub fn to_legacy_price(&self) -> f32 {
        (self.units as f64 + f64::from(self.nanos) / NANOS_PER_UNIT as f64) as f32
    }
}

/// Minor units of `currency` for a legacy `float` price, rounded to the
/// nearest minor unit (19.99f32 → 1999 cents, although 19.99f32 is really
/// 19.9899997...).
pub fn minor_from_legacy_price(currency: &str, price: f32) -> Result<i64, MoneyError> {
    if !price.is_finite() {
        return Err(MoneyError::NotFinite);
    }
    let digits =
        minor_digits(currency).ok_or_else(|| MoneyError::UnknownCurrency(currency.to_owned()))?;
    let minor = (f64::from(price) * 10_f64.powi(digits as i32)).round();
    if minor.abs() > 1e15 {
        return Err(MoneyError::Overflow);
    }
    Ok(minor as i64)
}

impl Money {
    /// `19.99` for 19 units and 990000000 nanos: exact (never rounded), with
    /// at least the currency's decimals (`5.00` USD, `500` JPY).
    pub fn amount(&self) -> String {
        let negative = self.units < 0 || self.nanos < 0;
        let nanos = i64::from(self.nanos).unsigned_abs();
        let units = self.units.unsigned_abs() + nanos / 1_000_000_000;
        let mut fraction = format!("{:09}", nanos % 1_000_000_000);
        let digits = minor_digits(&self.currency_code).unwrap_or(2) as usize;
        while fraction.len() > digits && fraction.ends_with('0') {
            fraction.pop();
        }
        let sign = if negative { "-" } else { "" };
        if fraction.is_empty() {
            format!("{sign}{units}")
        } else {
            format!("{sign}{units}.{fraction}")
        }
    }
}

/// `12.50 USD`-style text with exactly the currency's decimals.
pub fn format_minor(currency: &str, minor: i64) -> String {
    let digits = minor_digits(currency).unwrap_or(2);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs} {currency}");
    }
    let scale = 10_u64.pow(digits);
    format!(
        "{sign}{}.{:0width$} {currency}",
        abs / scale,
        abs % scale,
        width = digits as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(code: &str, units: i64, nanos: i32) -> Money {
        Money {
            currency_code: code.into(),
            units,
            nanos,
        }
    }

    #[test]
    fn amounts_keep_the_currency_decimals_and_never_round() {
        assert_eq!(money("EUR", 19, 990_000_000).amount(), "19.99");
        assert_eq!(money("USD", 5, 0).amount(), "5.00");
        assert_eq!(money("JPY", 500, 0).amount(), "500");
        assert_eq!(money("KWD", 1, 5_000_000).amount(), "1.005");
        assert_eq!(money("USD", -1, -500_000_000).amount(), "-1.50");
        assert_eq!(money("USD", 0, -50_000_000).amount(), "-0.05");
        assert_eq!(money("USD", 1, 1).amount(), "1.000000001");
    }

    #[test]
    fn the_currency_table_is_sorted_for_binary_search() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(minor_digits("USD"), Some(2));
        assert_eq!(minor_digits("JPY"), Some(0));
        assert_eq!(minor_digits("KWD"), Some(3));
        assert_eq!(minor_digits("XXX"), None);
    }

    #[test]
    fn units_and_nanos_convert_to_minor_units_exactly() {
        assert_eq!(money("USD", 19, 990_000_000).to_minor(), Ok(1999));
        assert_eq!(money("JPY", 500, 0).to_minor(), Ok(500));
        assert_eq!(money("KWD", 1, 5_000_000).to_minor(), Ok(1005));
        assert_eq!(money("USD", -1, -500_000_000).to_minor(), Ok(-150));
        assert_eq!(
            Money::from_minor("USD", 1999),
            money("USD", 19, 990_000_000)
        );
        assert_eq!(
            Money::from_minor("USD", -150),
            money("USD", -1, -500_000_000)
        );
    }

    #[test]
    fn amounts_finer_than_the_minor_unit_or_malformed_are_refused() {
        assert!(matches!(
            money("USD", 1, 5_000_000).to_minor(),
            Err(MoneyError::TooPrecise { digits: 2, .. })
        ));
        assert!(matches!(
            money("JPY", 1, 500_000_000).to_minor(),
            Err(MoneyError::TooPrecise { digits: 0, .. })
        ));
        assert_eq!(
            money("USD", 1, -1).to_minor(),
            Err(MoneyError::SignMismatch)
        );
        assert_eq!(
            money("USD", 0, 1_000_000_000).to_minor(),
            Err(MoneyError::NanosOutOfRange)
        );
        assert_eq!(
            money("usd", 1, 0).to_minor(),
            Err(MoneyError::UnknownCurrency("usd".into()))
        );
        assert_eq!(
            money("USD", i64::MAX, 0).to_minor(),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn legacy_float_prices_round_to_the_nearest_minor_unit() {
        assert_eq!(minor_from_legacy_price("USD", 19.99), Ok(1999));
        assert_eq!(minor_from_legacy_price("USD", 0.1 + 0.2), Ok(30));
        assert_eq!(minor_from_legacy_price("JPY", 1234.4), Ok(1234));
        assert_eq!(
            minor_from_legacy_price("USD", f32::NAN),
            Err(MoneyError::NotFinite)
        );
        assert!((Money::from_minor("USD", 1999).to_legacy_price() - 19.99).abs() < 1e-4);
    }

    #[test]
    fn formatting_shows_the_currency_decimals() {
        assert_eq!(format_minor("USD", 1999), "19.99 USD");
        assert_eq!(format_minor("USD", 5), "0.05 USD");
        assert_eq!(format_minor("JPY", 500), "500 JPY");
        assert_eq!(format_minor("KWD", -1005), "-1.005 KWD");
    }
}
