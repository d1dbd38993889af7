//! The one path every `/api/v1` route takes: REST input → proto request → the gRPC method → REST output → envelope.
//!
//! A route is declared with [`forward!`](crate::forward) as its OpenAPI annotation, its inputs (path parameter,
//! query, JSON body), its output type and the gRPC method it calls; the handler body is generated. What differs
//! between routes lives in two conversions beside the types: the request through [`TryFrom`] (the REST input, or a
//! [`With`] of the path parameter and the body or query, into the proto request; fallible where the gateway must
//! check what proto3 cannot express, such as `page_size`), and the response through [`Reply`].

use axum::http::StatusCode;

use crate::envelope::{ApiResult, Success};
use crate::error::ApiError;

/// A path parameter together with the query or body of the same request, converted into one proto request.
#[derive(Debug)]
pub struct With<P, T>(pub P, pub T);

/// The input of a route that takes none: its proto request is `From<NoInput>`.
#[derive(Debug)]
pub struct NoInput;

/// The REST output of a gRPC response.
pub trait Reply<P>: Sized {
    /// Converts the response; fails (500, logged) only when the server left out a field it always fills.
    fn reply(response: P) -> Result<Self, ApiError>;

    /// The success status of this output: 200 unless the call created something.
    fn status(&self) -> StatusCode {
        StatusCode::OK
    }
}

/// Wraps a converted response in the success envelope with its status, or 201 for routes that always create.
pub fn respond<P, T: Reply<P>>(response: P, always_created: bool) -> ApiResult<T> {
    let output = T::reply(response)?;
    let status = if always_created {
        StatusCode::CREATED
    } else {
        output.status()
    };
    Ok(Success::with_status(status, output))
}

/// `Reply` for outputs that are a plain `From` of the response.
#[macro_export]
macro_rules! reply_from {
    ($($output:ty => $response:ty),* $(,)?) => {
        $(impl $crate::routes::forward::Reply<$response> for $output {
            fn reply(response: $response) -> Result<Self, $crate::error::ApiError> {
                Ok(<$output>::from(response))
            }
        })*
    };
}

/// `Reply` for a page of items (`{items, next_page_token}`) whose items convert with `TryFrom` (or `From`).
#[macro_export]
macro_rules! reply_page {
    ($($item:ty => $response:ty),* $(,)?) => {
        $(impl $crate::routes::forward::Reply<$response> for $crate::routes::Page<$item> {
            fn reply(response: $response) -> Result<Self, $crate::error::ApiError> {
                Ok($crate::routes::Page {
                    items: response
                        .items
                        .into_iter()
                        .map(|item| <$item>::try_from(item).map_err($crate::error::ApiError::from))
                        .collect::<Result<_, _>>()?,
                    next_page_token: $crate::convert::next_page_token(response.next_page_token),
                })
            }
        })*
    };
}

/// Declares a route handler that forwards to one gRPC method.
///
/// ```text
/// forward! {
///     /// Doc comment and #[utoipa::path(...)] as for any handler.
///     fn earn(body: EarnBody) -> MutationResult = points.earn;
/// }
/// ```
///
/// Inputs, in this order and each optional: `path: P` (one path parameter), `query: Q` (otherwise any query parameter
/// is refused), `body: B` (`ApiJson`) or `optional_body: B` (`OptionalApiJson`: an empty body is `B::default()`).
/// The proto request is `TryFrom` the query or body, or of `With(path, query_or_body)` (`With(path, NoInput)` for a
/// path alone); routes without inputs convert [`NoInput`]. A trailing `, created` answers 201 always; otherwise the output's [`Reply::status`] decides.
#[macro_export]
macro_rules! forward {
    ($(#[$attr:meta])* fn $name:ident() -> $out:ty = $service:ident.$method:ident $(, $created:ident)?;) => {
        $crate::forward!(@handler $(#[$attr])* $name
            [$crate::extract::ApiQuery($crate::routes::NoQuery {}): $crate::extract::ApiQuery<$crate::routes::NoQuery>]
            ($crate::routes::forward::NoInput) -> $out = $service.$method [$($created)?]);
    };
    ($(#[$attr:meta])* fn $name:ident(query: $query:ty) -> $out:ty = $service:ident.$method:ident $(, $created:ident)?;) => {
        $crate::forward!(@handler $(#[$attr])* $name
            [$crate::extract::ApiQuery(query): $crate::extract::ApiQuery<$query>]
            (query) -> $out = $service.$method [$($created)?]);
    };
    ($(#[$attr:meta])* fn $name:ident(body: $body:ty) -> $out:ty = $service:ident.$method:ident $(, $created:ident)?;) => {
        $crate::forward!(@handler $(#[$attr])* $name
            [$crate::extract::ApiQuery($crate::routes::NoQuery {}): $crate::extract::ApiQuery<$crate::routes::NoQuery>,
             $crate::extract::ApiJson(body): $crate::extract::ApiJson<$body>]
            (body) -> $out = $service.$method [$($created)?]);
    };
    ($(#[$attr:meta])* fn $name:ident(path: $path:ty) -> $out:ty = $service:ident.$method:ident $(, $created:ident)?;) => {
        $crate::forward!(@handler $(#[$attr])* $name
            [$crate::extract::ApiQuery($crate::routes::NoQuery {}): $crate::extract::ApiQuery<$crate::routes::NoQuery>,
             $crate::extract::ApiPath(path): $crate::extract::ApiPath<$path>]
            ($crate::routes::forward::With(path, $crate::routes::forward::NoInput)) -> $out = $service.$method [$($created)?]);
    };
    ($(#[$attr:meta])* fn $name:ident(path: $path:ty, query: $query:ty) -> $out:ty = $service:ident.$method:ident $(, $created:ident)?;) => {
        $crate::forward!(@handler $(#[$attr])* $name
            [$crate::extract::ApiPath(path): $crate::extract::ApiPath<$path>,
             $crate::extract::ApiQuery(query): $crate::extract::ApiQuery<$query>]
            ($crate::routes::forward::With(path, query)) -> $out = $service.$method [$($created)?]);
    };
    ($(#[$attr:meta])* fn $name:ident(path: $path:ty, body: $body:ty) -> $out:ty = $service:ident.$method:ident $(, $created:ident)?;) => {
        $crate::forward!(@handler $(#[$attr])* $name
            [$crate::extract::ApiQuery($crate::routes::NoQuery {}): $crate::extract::ApiQuery<$crate::routes::NoQuery>,
             $crate::extract::ApiPath(path): $crate::extract::ApiPath<$path>,
             $crate::extract::ApiJson(body): $crate::extract::ApiJson<$body>]
            ($crate::routes::forward::With(path, body)) -> $out = $service.$method [$($created)?]);
    };
    ($(#[$attr:meta])* fn $name:ident(path: $path:ty, optional_body: $body:ty) -> $out:ty = $service:ident.$method:ident $(, $created:ident)?;) => {
        $crate::forward!(@handler $(#[$attr])* $name
            [$crate::extract::ApiQuery($crate::routes::NoQuery {}): $crate::extract::ApiQuery<$crate::routes::NoQuery>,
             $crate::extract::ApiPath(path): $crate::extract::ApiPath<$path>,
             $crate::extract::OptionalApiJson(body): $crate::extract::OptionalApiJson<$body>]
            ($crate::routes::forward::With(path, body)) -> $out = $service.$method [$($created)?]);
    };
    (@handler $(#[$attr:meta])* $name:ident [$($parameters:tt)*] ($input:expr) -> $out:ty = $service:ident.$method:ident [$($created:ident)?]) => {
        $crate::forward!(@body $(#[$attr])* $name [$($parameters)*] ($input) -> $out, $crate::forward!(@created $($created)?), $service.$method);
    };
    (@created) => { false };
    (@created created) => { true };
    (@body $(#[$attr:meta])* $name:ident [$($parameters:tt)*] ($input:expr) -> $out:ty, $created:expr, $service:ident.$method:ident) => {
        $(#[$attr])*
        async fn $name(
            ::axum::extract::State(state): ::axum::extract::State<$crate::state::AppState>,
            context: $crate::extract::CallContext,
            $($parameters)*
        ) -> $crate::envelope::ApiResult<$out> {
            let request = ::core::convert::TryInto::try_into($input)
                .map_err($crate::error::ApiError::from)?;
            let response = state
                .backend
                .$service
                .clone()
                .$method(context.request(request))
                .await?
                .into_inner();
            $crate::routes::forward::respond(response, $created)
        }
    };
}
