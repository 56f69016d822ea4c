package workflows

import (
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// Search attributes set on every run so the Web UI can filter runs, e.g.
// `ClusterflowCluster = "lab" AND ClusterflowOutcome = "failed"`.
var (
	SAPlaybook  = temporal.NewSearchAttributeKeyKeyword("ClusterflowPlaybook")
	SACluster   = temporal.NewSearchAttributeKeyKeyword("ClusterflowCluster")
	SAStepKinds = temporal.NewSearchAttributeKeyKeywordList("ClusterflowStepKinds")
	SAStep      = temporal.NewSearchAttributeKeyKeyword("ClusterflowStep")
	SAOutcome   = temporal.NewSearchAttributeKeyKeyword("ClusterflowOutcome")
)

// SearchAttributes lists the custom search attributes clusterflow needs registered on
// its namespace, with their types.
func SearchAttributes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		SAPlaybook.GetName():  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SACluster.GetName():   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SAStepKinds.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST,
		SAStep.GetName():      enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SAOutcome.GetName():   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	}
}
