//! `points.v1.ReportService`: the liability report of the caller's merchant, or of the platform.

use tonic::{Request, Response, Status};

use super::{Handlers, handle, parse_timestamp, timestamp};
use crate::{
    pb::{self, report_service_server::ReportService},
    service::reports::{self, LiabilityQuery, LiabilityReport},
};

fn report_message(report: LiabilityReport) -> pb::LiabilityReport {
    let reconciliation = report.reconciliation;
    pb::LiabilityReport {
        from: Some(timestamp(report.from)),
        to: Some(timestamp(report.to)),
        bucket: report.bucket.as_str().to_owned(),
        tz: report.tz,
        opening_outstanding: report.opening_outstanding,
        closing_outstanding: report.closing_outstanding,
        buckets: report
            .buckets
            .into_iter()
            .map(|bucket| pb::LiabilityBucket {
                start: Some(timestamp(bucket.start)),
                issued: bucket.movements.issued,
                redeemed: bucket.movements.redeemed,
                expired: bucket.movements.expired,
                adjusted_in: bucket.movements.adjusted_in,
                adjusted_out: bucket.movements.adjusted_out,
                reversed_in: bucket.movements.reversed_in,
                reversed_out: bucket.movements.reversed_out,
                outstanding: bucket.outstanding,
            })
            .collect(),
        reconciliation: Some(pb::Reconciliation {
            closing_outstanding: reconciliation.closing_outstanding,
            sum_of_balances: reconciliation.sum_of_balances,
            ok: reconciliation.ok(),
            as_of: Some(timestamp(reconciliation.as_of)),
        }),
        merchants: report
            .merchants
            .into_iter()
            .map(|merchant| pb::MerchantLiability {
                merchant_id: merchant.merchant_id.to_string(),
                slug: merchant.slug,
                closing_outstanding: merchant.closing_outstanding,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl ReportService for Handlers {
    async fn get_liability_report(
        &self,
        request: Request<pb::LiabilityReportRequest>,
    ) -> Result<Response<pb::LiabilityReport>, Status> {
        handle(request, |call, message| async move {
            let query = LiabilityQuery {
                from: parse_timestamp("from", message.from)?,
                to: parse_timestamp("to", message.to)?,
                bucket: message.bucket,
                tz: message.tz,
            };
            Ok(report_message(
                reports::liability(&self.services, &call, query).await?,
            ))
        })
        .await
    }
}
