"""One APIRouter per job."""
